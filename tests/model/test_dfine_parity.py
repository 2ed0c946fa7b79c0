"""Our D-FINE, loaded from a transformers folder, computes what transformers' DFineForObjectDetection computes.

The oracle (tests/dfine_oracle.py) has the architecture of our N and S presets, random weights made
well-conditioned as for the RT-DETRv2 tests, and is saved with ``save_pretrained`` and loaded with our
``load_model``. Compared: logits and boxes, 1e-4 absolute (float32, two implementations), for every sampler (the
discrete one against transformers' ``decoder_method="discrete"``), at batch 1 and 4, on square and non-square
inputs; then the same through ONNX Runtime from the exporter's graph. Small inputs (320x320, 320x384) carry the
bulk: none of the compared parts depends on the input size except through the map shapes, which both sizes vary
(square and not). The real 640x640 and 480x640 inputs run once each (slow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from rtdetr_export.model import Sampler

from conftest import DetectorOutputs, compare_detectors, make_images, run_ours
from rtdetr_export.model.query_selection import select_topk

transformers = pytest.importorskip("transformers")

PARITY_TOL = 1e-4
PRESETS = ("dfine_n", "dfine_s")
# Query selection keeps 300 of D-FINE-N's 400 encoder cells at 256x320, so near-ties at the selection boundary are
# common there (7.5e-5 apart on one of the four images); at these two sizes every gap is over 1e-4 for N and S.
SMALL = [(320, 320), (320, 384)]


def images(batch: int, height: int, width: int, seeds: tuple[int, int] = (1, 3)) -> torch.Tensor:
    """``batch`` (1 or 4) distinct seeded images in [0, 1]: noise and smooth scenes, two of each ``seeds``."""
    both = torch.cat([make_images(height, width, seed=seed) for seed in seeds])
    return both[:batch].clone()


def transformers_outputs(raw) -> DetectorOutputs:
    """transformers' logits and boxes, with the encoder scores its query selection ranked."""
    best = raw.enc_outputs_class.max(-1).values
    topk = select_topk(raw.enc_outputs_class, raw.logits.shape[1])
    return DetectorOutputs(raw.logits, raw.pred_boxes, best.gather(1, topk), best)


@pytest.fixture(scope="session")
def dfine_folder(made_once) -> Callable[[str], Path]:
    """``dfine_folder(preset)``: the perturbed oracle's saved folder, built once per test run."""
    from dfine_oracle import build_oracle, save_oracle

    return lambda preset: made_once(f"hf_{preset}", lambda out: save_oracle(build_oracle(preset, (320, 320)), out)) \
        / "model"


@pytest.fixture(scope="session")
def oracle(dfine_folder) -> Callable[[str, str], torch.nn.Module]:
    """``oracle(preset, method)``: transformers' model read back from the saved folder with that sampler."""
    cache: dict[tuple[str, str], torch.nn.Module] = {}

    def get(preset: str, method: str) -> torch.nn.Module:
        if (preset, method) not in cache:
            model = transformers.DFineForObjectDetection.from_pretrained(dfine_folder(preset), decoder_method=method)
            assert model.config.decoder_method == method
            cache[preset, method] = model.eval()
        return cache[preset, method]

    return get


def ours(folder: Path, method: str, size: tuple[int, int], bilinear_op: str = "gridsample"):
    from rtdetr_export.weights import load_model

    model = load_model(folder, method=method, image_size=size)
    model.set_sampler(Sampler.parse(method, bilinear_op))
    return model


@torch.no_grad()
def check_against_transformers(oracle, dfine_folder, preset: str, method: str, batch: int,
                               size: tuple[int, int], bilinear_op: str = "gridsample",
                               seeds: tuple[int, int] = (1, 3)) -> float:
    """Assert ours matches transformers on ``batch`` images of ``size``; returns the max |diff|."""
    x = images(batch, *size, seeds)
    want = transformers_outputs(oracle(preset, method)(pixel_values=x))
    model = ours(dfine_folder(preset), method, size, bilinear_op)
    got = run_ours(model, x)
    assert got.logits.shape == (batch, 300, 80) and got.boxes.shape == (batch, 300, 4)
    result = compare_detectors(want, got, PARITY_TOL)
    sampler = method if method == "discrete" else f"{method}/{bilinear_op}"
    print(f"{preset} {sampler} batch {batch} {size[0]}x{size[1]}: ordered max diff "
          f"{result.ordered_max_diff:.3g}, matched {result.matched_max_diff:.3g} (moved {result.moved_rows} rows)")
    assert result.matched_max_diff <= PARITY_TOL
    return result.matched_max_diff


@pytest.mark.slow
def test_the_folder_loads_as_d_fine_of_its_size(dfine_folder):
    from rtdetr_export.weights import load_model

    for preset, name in (("dfine_n", "D-FINE-N"), ("dfine_s", "D-FINE-S")):
        model = load_model(dfine_folder(preset), image_size=320)
        assert type(model).__name__ == "DFine" and model.config.model_name == name
        assert model.source.format == "transformers" and model.config.num_classes == 80


def test_the_oracle_exercises_fdr_lqe_and_distinct_inputs(oracle):
    """Boxes must move away from the anchors' fixed sizes and the images must give different outputs, or the
    parity below would compare near-constants."""
    with torch.no_grad():
        raw = oracle("dfine_n", "default")(pixel_values=images(4, 320, 320))
    sizes = raw.pred_boxes[..., 2:]
    assert float(sizes.max() - sizes.min()) > 0.04
    assert float((raw.logits[0] - raw.logits[1]).abs().max()) > 1e-2
    assert float((raw.logits[2] - raw.logits[3]).abs().max()) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method", ["default", "discrete"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("size", SMALL, ids=lambda s: f"{s[0]}x{s[1]}")
def test_outputs_match_transformers(preset, method, batch, size, oracle, dfine_folder):
    check_against_transformers(oracle, dfine_folder, preset, method, batch, size)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_gather_bilinear_matches_transformers_and_gridsample(preset, oracle, dfine_folder):
    check_against_transformers(oracle, dfine_folder, preset, "default", 4, (320, 384), bilinear_op="gather")
    x = images(4, 320, 384)
    with torch.no_grad():
        grid = ours(dfine_folder(preset), "default", (320, 384))(x)
        gather = ours(dfine_folder(preset), "default", (320, 384), "gather")(x)
    for a, b in zip(grid, gather):
        assert float((a - b).abs().max()) <= 1e-5  # the same math, summed in another order


# At 640 px D-FINE-N has 2000 encoder cells for 300 queries: on the default images the 300th and 301st scores lay
# 4e-6 to 9e-5 apart, under the comparator's tie margin (1e-4). These seeds' images keep that gap over 2.4e-4
# (measured on the oracle: 640x640 seeds 3 and 9, 2.4e-4 to 3.5e-4; 480x640 seed 1's noise image, 3.8e-4).
@pytest.mark.slow
@pytest.mark.parametrize("method, batch, size, seeds", [("default", 4, (640, 640), (3, 9)),
                                                        ("discrete", 1, (480, 640), (1, 3))],
                         ids=["default-b4-640x640", "discrete-b1-480x640"])
def test_outputs_match_transformers_at_the_real_size(method, batch, size, seeds, oracle, dfine_folder):
    check_against_transformers(oracle, dfine_folder, "dfine_n", method, batch, size, seeds=seeds)


# -- through ONNX ------------------------------------------------------------------------------------------------
SAMPLERS = [("default", "gridsample"), ("default", "gather"), ("discrete", "gather")]


def export_and_run(model, bilinear_op: str, batch: int, x: np.ndarray):
    """The exporter's graph (traced, simplified, checked) for ``model``; its op census and ONNX Runtime outputs."""
    import onnxruntime as ort

    from rtdetr_export.export.torch_export import GraphOptions, export_graph

    exported = export_graph(model, GraphOptions(batch=batch,
                                                sampler=Sampler.parse(model.config.decoder_method, bilinear_op)))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(exported.graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": x})
    return exported.op_census, torch.from_numpy(logits), torch.from_numpy(boxes)


@pytest.mark.slow  # 24 exports of 10-20 s each; the fast tier keeps D-FINE's PyTorch parity
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method, bilinear_op", SAMPLERS, ids=[f"{m}-{o}" for m, o in SAMPLERS])
@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_runtime_matches_transformers(preset, method, bilinear_op, batch, oracle, dfine_folder):
    size = SMALL[1]
    x = images(batch, *size)
    with torch.no_grad():
        want = transformers_outputs(oracle(preset, method)(pixel_values=x))
    model = ours(dfine_folder(preset), method, size)
    census, logits, boxes = export_and_run(model, bilinear_op, batch, x.numpy())
    if method == "default" and bilinear_op == "gridsample":
        assert census.get("GridSample", 0) > 0
    else:
        assert "GridSample" not in census and census["Gather"] > 0
    reference = run_ours(model, x)  # only its encoder scores are read, for the tie check
    got = DetectorOutputs(logits, boxes, reference.topk_scores, reference.all_scores)
    result = compare_detectors(want, got, PARITY_TOL)
    print(f"ONNX {preset} {method}/{bilinear_op} batch {batch}: ordered max diff {result.ordered_max_diff:.3g}, "
          f"matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= PARITY_TOL


def test_describe_names_the_family_size_and_backbone(dfine_folder):
    from click.testing import CliRunner

    from rtdetr_export.cli import main

    result = CliRunner().invoke(main, ["describe", "--model", str(dfine_folder("dfine_n")), "--image-size", "320"])
    assert result.exit_code == 0, result.output
    assert "D-FINE-N" in result.output and "HGNetv2" in result.output and "ResNet" not in result.output
