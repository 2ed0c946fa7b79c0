"""Output helpers shared by the CLI commands, and the one way a command loads the reference model."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click


def build_model(model_path: str | None, preset: str | None, method: str | None, image_size: int | tuple[int, int] | None,
                quiet: bool = False) -> Any:
    """Load the reference model; with no --model, preset r18vd (or --preset) with seeded random weights, said on
    stderr."""
    from rtdetr_export.weights import load_model

    if model_path is None:
        preset = preset or "r18vd"
    model = load_model(model_path, preset=preset, method=method, image_size=image_size)
    if model.source.format == "random" and not quiet:
        log(f"no --model given: using preset {preset} with seeded random weights (seed {model.source.seed})")
    config = model.config
    if config.version == "v1" and config.decoder_method != "default" and not quiet:
        # v1 was only ever trained with the bilinear sampler; the artifact is proven against this reference.
        log(f"note: RT-DETRv1 was trained with bilinear sampling; --method {config.decoder_method} changes its "
            "outputs (verification compares against the PyTorch model with the same sampler)")
    return model


def log(message: str) -> None:
    """A progress or notice line on stderr (stdout stays machine-readable)."""
    click.echo(message, err=True)


def progress(quiet: bool, as_json: bool = False) -> Callable[[str], None]:
    """The log function for a command: silent with --quiet or --json."""
    return (lambda message: None) if quiet or as_json else log


def emit_json(data: Any) -> None:
    """Print a result as JSON on stdout: typed results serialise themselves (``to_json``)."""
    if hasattr(data, "to_json"):
        data = data.to_json()
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
