"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from rtdetr_export.model.config import METHODS, PRESETS


def model_options(func: Callable) -> Callable:
    """--model / --preset / --method / --image-size, the options that pick the reference model."""
    func = click.option("--image-size", type=int, default=None,
                        help="Square input size the model is built for (default: the model's own, 640).")(func)
    func = click.option("--method", type=click.Choice(METHODS), default=None,
                        help="Deformable-attention sampler: default (grid_sample) or discrete (gather).")(func)
    func = click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
                        help="Architecture preset; with no --model, random weights of this size.")(func)
    func = click.option("--model", "model_path", type=click.Path(path_type=str), default=None,
                        help="A transformers model folder or an original RT-DETR .pth checkpoint.")(func)
    return func


def build_model(model_path: str | None, preset: str | None, method: str | None, image_size: int | None,
                quiet: bool = False) -> Any:
    """Load the reference model, telling the user on stderr when weights are random."""
    from rtdetr_export.weights import load_model

    model = load_model(model_path, preset=preset, method=method, image_size=image_size)
    if model.source.format == "random" and not quiet:
        log(f"no --model given: using preset {preset or 'r18vd'} with seeded random weights "
            f"(seed {model.source.seed})")
    return model


def log(message: str) -> None:
    """A progress or notice line on stderr (stdout stays machine-readable)."""
    click.echo(message, err=True)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
