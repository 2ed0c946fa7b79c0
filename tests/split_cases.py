"""Split artifacts for the tests of the commands that take one: a micro export, and copies of it whose files do not
belong together (the bad input every such command must refuse in one line, writing nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

from rtdetr_export.pipeline import OnnxExportOptions, export_split
from rtdetr_export.weights import load_model

# ~0.4M parameters at 128 px (as tests/pipeline/test_debug_precision_reexport.py): 336 encoder cells, 30 queries,
# 4 classes.
MICRO = dict(num_classes=4, backbone_stem_channels=16, backbone_widths=(16, 32, 64, 128), encoder_hidden_dim=32,
             encoder_ffn_dim=64, d_model=32, decoder_ffn_dim=64, num_queries=30)
SIZE = 128


def micro_model(seed: int = 0, **overrides):
    return load_model(preset="tiny", image_size=overrides.pop("image_size", SIZE), seed=seed, **{**MICRO, **overrides})


def micro_split(folder: Path, seed: int = 0, **options) -> Path:
    """A split export of the micro model (dynamic batch unless told), micro.json in ``folder``; its sidecar."""
    options = {"dynamic_batch": True, **options}
    folder.mkdir(parents=True, exist_ok=True)
    return export_split(micro_model(seed), folder / "micro.onnx", OnnxExportOptions(**options)).sidecar


def broken_splits(sidecar: Path, folder: Path) -> None:
    """Copies of the split ``sidecar`` in ``folder``: missing/ (its decoder graph gone) and mixed/ (its decoder
    graph from another export). A command given either must say, in one line, the graph's path and "missing" or
    "sha256" (tests/conftest.py ``broken_split``)."""
    other = micro_split(folder / "other", seed=1, verify=False)
    for case in ("missing", "mixed"):
        copy = folder / case
        copy.mkdir()
        for path in sidecar.parent.glob(f"{sidecar.stem}.*"):
            shutil.copy(path, copy / path.name)
        decoder = copy / f"{sidecar.stem}.decoder.onnx"
        decoder.unlink()
        if case == "mixed":
            shutil.copy(other.parent / "micro.decoder.onnx", decoder)


def one_line_error(output: str) -> str:
    """The CLI's only line for bad input (asserting there is nothing else: no traceback, no progress)."""
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in output, output
    return lines[0]
