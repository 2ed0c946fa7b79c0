"""The micro model and the artifacts the fast tier reads (a pytest plugin: conftest.py loads it).

MICRO is the tiny architecture narrowed to ~0.4 M parameters at 128 px: 336 encoder cells, 30 queries, 4 classes.
Its graphs have the same ops and structure as any RT-DETRv2 export, at a fraction of the compute, so the tests of
what reads an artifact (bench, eval, precision, verify, debug-precision, split runner) run in seconds.

The session artifacts are exported once per test run (shared by xdist workers through ``made_once``). All but
``micro_fp32`` are not simplified: onnxslim's passes over a graph's ~1000 nodes take most of an export's time
whatever the model's width, and simplification is proven by the slow tier's exports (tests/export/test_onnx_export.py).
``micro_fp32`` is, as a user's file is by default, so the fast tier also reads a simplified graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MICRO = dict(num_classes=4, backbone_stem_channels=16, backbone_widths=(16, 32, 64, 128), encoder_hidden_dim=32,
             encoder_ffn_dim=64, d_model=32, decoder_ffn_dim=64, num_queries=30)
MICRO_SIZE = 128

# The micro D-FINE: D-FINE-N's layout (HGNetv2 with learnable affine blocks returning its last two stages, strides
# 16/32, RepNCSPELAN4 fusion, FDR over 32 bins, the LQE head) narrowed as MICRO narrows RT-DETRv2: ~0.15 M
# parameters, 80 encoder cells at 128 px, 30 queries, 4 classes. ``size=None``: it is no released size.
MICRO_DFINE = dict(num_classes=4, size=None, hgnet_stem_channels=(3, 8, 16),
                   hgnet_stage_in_channels=(16, 32, 64, 96), hgnet_stage_mid_channels=(8, 16, 32, 48),
                   hgnet_stage_out_channels=(32, 64, 96, 128), hgnet_stage_num_blocks=(1, 1, 1, 1),
                   hgnet_stage_layers=(2, 2, 2, 2), encoder_hidden_dim=32, encoder_ffn_dim=64, d_model=32,
                   decoder_ffn_dim=64, decoder_n_points=(2, 2), decoder_layers=2, num_queries=30, lqe_hidden_dim=16)


def micro_model(seed: int = 0, **overrides):
    """The seeded micro model (``overrides``: other config fields, e.g. the classes of a dataset)."""
    from rtdetr_export.weights import load_model

    return load_model(preset="tiny", seed=seed, **{"image_size": MICRO_SIZE, **MICRO, **overrides})


def micro_dfine_model(seed: int = 0, **overrides):
    """The seeded micro D-FINE (a ``DFine``; ``overrides``: other DFineConfig fields)."""
    from rtdetr_export.weights import load_model

    return load_model(preset="dfine_n", seed=seed, **{"image_size": MICRO_SIZE, **MICRO_DFINE, **overrides})


def _exported(made_once, name: str, options_for, model_for=micro_model) -> Path:
    def make(folder: Path) -> None:
        from rtdetr_export.pipeline import export_onnx

        export_onnx(model_for(), folder / f"{name}.onnx", options_for())

    return made_once(f"micro-{name}", make) / f"{name}.onnx"


@pytest.fixture(scope="session")
def micro_fp32(made_once) -> Path:
    """Raw head, dynamic batch, FP32, simplified, verified against PyTorch when made."""
    from rtdetr_export.pipeline import OnnxExportOptions

    return _exported(made_once, "fp32", lambda: OnnxExportOptions(dynamic_batch=True))


@pytest.fixture(scope="session")
def micro_fp16(made_once) -> Path:
    """FP16, verified by detection agreement when made."""
    from rtdetr_export.artifact import PrecisionOptions
    from rtdetr_export.pipeline import OnnxExportOptions

    return _exported(made_once, "fp16", lambda: OnnxExportOptions(
        dynamic_batch=True, simplify=False, precision=PrecisionOptions("fp16", calib_count=2)))


@pytest.fixture(scope="session")
def micro_int8(made_once) -> Path:
    """INT8 for TensorRT (FP16 between the quantized layers), two calibration images, not verified: random
    weights' detections do not survive INT8 (the agreement limits are the trained fixture's business)."""
    from rtdetr_export.artifact import PrecisionOptions
    from rtdetr_export.pipeline import OnnxExportOptions

    return _exported(made_once, "int8", lambda: OnnxExportOptions(
        dynamic_batch=True, simplify=False, verify=False, precision=PrecisionOptions("int8", calib_count=2)))


@pytest.fixture(scope="session")
def micro_split(made_once) -> Path:
    """A split artifact (raw head, dynamic batch), verified when made; the path of its sidecar."""
    def make(folder: Path) -> None:
        from rtdetr_export.pipeline import OnnxExportOptions, export_split

        export_split(micro_model(), folder / "micro.onnx", OnnxExportOptions(dynamic_batch=True, simplify=False))

    return made_once("micro-split", make) / "micro.json"


@pytest.fixture(scope="session")
def micro_ir(made_once, micro_fp32) -> Path:
    """An OpenVINO IR of ``micro_fp32`` (weights stored fp16, OpenVINO's default), verified on OpenVINO CPU when
    made; the path of its .xml. Skipped without openvino."""
    pytest.importorskip("openvino", reason="OpenVINO IR tests need openvino (pip install openvino)")

    def make(folder: Path) -> None:
        from rtdetr_export.pipeline import export_openvino

        export_openvino(micro_fp32, folder / "micro.xml")

    return made_once("micro-ir", make) / "micro.xml"


@pytest.fixture(scope="session")
def micro_dfine_fp32(made_once) -> Path:
    """The micro D-FINE: raw head, dynamic batch, FP32, verified when made; not simplified (onnxslim takes 2.7 of
    its 4.2 s, and the outputs' static axes that Triton needs are declared without it)."""
    from rtdetr_export.pipeline import OnnxExportOptions

    return _exported(made_once, "dfine_fp32", lambda: OnnxExportOptions(dynamic_batch=True, simplify=False),
                     micro_dfine_model)


@pytest.fixture(scope="session")
def micro_dfine_int8(made_once) -> Path:
    """The micro D-FINE as ``micro_int8``: INT8 for TensorRT, two calibration images, not verified (random weights'
    detections do not survive INT8)."""
    from rtdetr_export.artifact import PrecisionOptions
    from rtdetr_export.pipeline import OnnxExportOptions

    return _exported(made_once, "dfine_int8", lambda: OnnxExportOptions(
        dynamic_batch=True, simplify=False, verify=False, precision=PrecisionOptions("int8", calib_count=2)),
        micro_dfine_model)
