"""Split artifacts for the tests of the commands that take one (a pytest plugin: conftest.py loads it): the trained
fixture exported both ways, and copies of the micro split whose files do not belong together (the bad input
every such command must refuse in one line, writing nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiers import costly


def broken_splits(sidecar: Path, folder: Path) -> None:
    """Copies of the split ``sidecar`` in ``folder``: missing/ (its decoder graph gone) and mixed/ (its decoder
    graph from another training of the same architecture: the same graph with other weights). A command given
    either must say, in one line, the graph's path and "missing" or "sha256" (``broken_split`` below)."""
    for case in ("missing", "mixed"):
        copy = folder / case
        copy.mkdir()
        for path in sidecar.parent.glob(f"{sidecar.stem}.*"):
            shutil.copy(path, copy / path.name)
        decoder = copy / f"{sidecar.stem}.decoder.onnx"
        if case == "mixed":
            _retrained(decoder)
        else:
            decoder.unlink()


def _retrained(graph: Path) -> None:
    """``graph`` with other weights (every float initializer scaled): the decoder of another export of the same
    architecture, as a user mixing two exports' files has (re-exporting one costs seconds; this, milliseconds)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    for i, tensor in enumerate(model.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f":
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values * 1.5, tensor.name))
    onnx.save(model, str(graph))


def one_line_error(output: str) -> str:
    """The CLI's only line for bad input (asserting there is nothing else: no traceback, no progress)."""
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in output, output
    return lines[0]


# -- fixtures ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
@costly
def shapes_split_and_single(made_once) -> tuple[Path, Path]:
    """(the split artifact's sidecar, the single ONNX file) of the trained fixture, exported with the same options
    (dynamic batch, raw head; not verified here: the split and single-file export tests prove each against
    PyTorch). predict, eval and bench on the split must give what they give on the single file."""
    from rtdetr_export.pipeline import OnnxExportOptions, export_onnx, export_split
    from rtdetr_export.weights import load_model

    def make(folder: Path) -> None:
        from conftest import SHAPES_MODEL

        model = load_model(SHAPES_MODEL)
        options = OnnxExportOptions(dynamic_batch=True, verify=False)
        export_split(model, folder / "shapes_split.onnx", options)
        export_onnx(model, folder / "shapes_single.onnx", options)

    folder = made_once("shapes_split_and_single", make)
    return folder / "shapes_split.json", folder / "shapes_single.onnx"


@pytest.fixture(scope="session")
def broken_split(made_once, micro_split) -> dict[str, tuple[Path, str]]:
    """Copies of the micro split whose files do not belong together (split_cases.broken_splits): case -> (its
    sidecar, what the one-line error says besides the graph's path), made once for every command's tests."""
    folder = made_once("broken_split", lambda folder: broken_splits(micro_split, folder))
    return {case: (folder / case / "micro.json", why) for case, why in (("missing", "missing"), ("mixed", "sha256"))}
