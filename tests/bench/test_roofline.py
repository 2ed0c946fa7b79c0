"""The roofline column (bench/roofline.py) and the measured peaks it divides by (bench/peaks.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rtdetr_export.bench.artifacts import Artifact
from rtdetr_export.bench.flops import FlopCount
from rtdetr_export.bench.machine import cpu_flags
from rtdetr_export.bench.peaks import GEMM_SHAPES, Peak, Peaks, measure_peaks
from rtdetr_export.bench.roofline import Roofline, RooflineBasis, peak_precision
from rtdetr_export.bench.targets import Target

# A model of 40 GFLOP per image, counted at batch 2, and peaks whose best 512^3 calls took 2.5 / 1.25 / 0.5 ms.
COUNT = FlopCount({"Conv": 30_000_000_000, "MatMul": 10_000_000_000}, {"images": (2, 3, 640, 640)}, batch=2)
PEAKS = Peaks({p: Peak(p, "runtime", (512, 512, 512), 2, ms, samples=3)
               for p, ms in (("fp32", 2.5), ("bf16", 1.25), ("int8", 0.5))})


def _artifact(label: str, precision: str) -> Artifact:
    return Artifact(Path(f"{label}.onnx"), "onnx", label, precision=precision)


def _basis() -> RooflineBasis:
    return RooflineBasis({"ours": COUNT, "int8": COUNT}, precisions={"ours": "fp32", "int8": "int8"}, peaks=PEAKS)


def test_a_peak_is_two_m_k_n_flops_over_its_best_call():
    assert math.isclose(PEAKS.get("fp32").gflops, 2 * 512 ** 3 / 2.5e-3 / 1e9)  # 107.4 GFLOP/s
    assert Peaks.from_json(PEAKS.to_json()) == PEAKS
    assert Peak("bf16", "openvino", GEMM_SHAPES[0], None, None, note="not measured: ...").gflops is None


def test_achieved_gflops_is_flops_per_image_times_images_per_second_and_the_fraction_is_over_the_peak():
    target = Target("onnxruntime-cpu:ours", "onnxruntime", "fp32", "cpu", artifact=_artifact("ours", "fp32"))
    row = _basis().row(target, throughput_ips=2.0)
    assert row.flops_per_image == 40e9 and row.counted_from == "ours"
    assert row.achieved_gflops == 80.0  # 40 GFLOP per image x 2 images per second
    assert row.peak_precision == "fp32" and row.peak_gflops == PEAKS.get("fp32").gflops
    assert math.isclose(row.fraction, 80.0 / (2 * 512 ** 3 / 2.5e-3 / 1e9))
    assert row.to_json()["fraction_of_peak"] == row.fraction
    assert Roofline.from_json(row.to_json()) == row
    assert row.cell() == "80 GFLOP/s, 75% of FP32 peak"
    assert _basis().row(target, throughput_ips=0.01).cell() == "0.4 GFLOP/s, <1% of FP32 peak"
    above = _basis().row(target, throughput_ips=3.0)  # 120 GFLOP/s over a 107 GFLOP/s peak: the peak was disturbed
    assert above.fraction > 1 and above.note.startswith("above the measured peak")


@pytest.mark.parametrize("target, precision", [
    (Target("onnxruntime-cpu:int8", "onnxruntime", "int8", "cpu", artifact=_artifact("int8", "int8")), "int8"),
    (Target("openvino-cpu-f32:int8", "openvino", "int8", "cpu", artifact=_artifact("int8", "int8"),
            info={"precision_hint": "f32"}), "int8"),
    (Target("openvino-cpu-bf16:ours", "openvino", "bf16", "cpu", artifact=_artifact("ours", "fp32"),
            info={"precision_hint": "bf16"}), "bf16"),
    (Target("openvino-cpu-f32:ours", "openvino", "fp32", "cpu", artifact=_artifact("ours", "fp32"),
            info={"precision_hint": "f32"}), "fp32"),
    (Target("torch-fp32-cpu", "torch", "fp32", "cpu", role="reference"), "fp32"),
])
def test_each_row_is_compared_with_the_peak_of_the_precision_it_runs_in(target, precision):
    assert peak_precision(target) == (precision, None)
    assert _basis().row(target, 1.0).peak_gflops == PEAKS.get(precision).gflops


def test_an_fp16_file_on_a_cpu_runtime_is_compared_with_fp32_and_says_so():
    target = Target("onnxruntime-cpu:fp16", "onnxruntime", "fp16", "cpu", artifact=_artifact("ours", "fp16"))
    row = _basis().row(target, 1.0)
    assert row.peak_precision == "fp32" and row.peak_gflops == PEAKS.get("fp32").gflops
    assert "FP32 peak" in row.note


def test_bf16_rows_are_compared_with_fp32_where_the_bf16_hint_runs_in_f32():
    # On a CPU without bf16 instructions OpenVINO runs the bf16 hint in f32, the GEMM and the rows alike.
    peaks = Peaks({**PEAKS.by_precision, "bf16": Peak("bf16", "openvino", (512, 512, 512), 2, 5.0, 3, "no bf16",
                                                       executed="fp32")})
    basis = RooflineBasis({"ours": COUNT}, precisions={"ours": "fp32"}, peaks=peaks)
    target = Target("openvino-cpu-bf16:ours", "openvino", "bf16", "cpu", artifact=_artifact("ours", "fp32"),
                    info={"precision_hint": "bf16"})
    row = basis.row(target, 1.0)
    assert row.peak_precision == "fp32" and row.peak_gflops == PEAKS.get("fp32").gflops
    assert row.note == "BF16 runs in FP32 on this CPU: compared with the FP32 peak"
    assert Peaks.from_json(peaks.to_json()) == peaks


def test_rows_without_a_graph_use_the_models_fp32_count_and_gpu_rows_have_no_cpu_peak():
    basis = _basis()
    torch_row = basis.row(Target("torch-fp32-cpu", "torch", "fp32", "cpu", role="reference"), 1.0)
    assert torch_row.counted_from == "ours"  # the FP32 graph, not the INT8 one
    engine = basis.row(Target("tensorrt-cuda:m.engine", "tensorrt", "fp16", "cuda"), 10.0)
    assert engine.achieved_gflops == 400.0 and engine.peak_gflops is None and engine.fraction is None
    assert "measured on the CPU only" in engine.note and engine.cell() == "400 GFLOP/s, no FP16 peak"
    nothing = RooflineBasis(peaks=PEAKS).row(Target("torch-fp32-cpu", "torch", "fp32", "cpu"), 1.0)
    assert nothing.achieved_gflops is None and "no ONNX graph" in nothing.note and nothing.cell() == "-"


def test_the_reports_roofline_holds_the_convention_the_counts_and_the_peaks():
    data = _basis().to_json()
    assert data["convention"].startswith("1 multiply-add = 2 FLOPs")
    assert data["flops"]["ours"]["flops_per_image"] == 40e9 and data["model_flops_from"] == "ours"
    assert data["peaks"]["int8"]["shape"] == [512, 512, 512] and data["peaks"]["int8"]["runtime"] == "runtime"


def test_measured_peaks_time_each_precision_and_say_what_this_cpu_lacks():
    peaks = measure_peaks(threads=1, repeats=1, shapes=((64, 64, 64),))
    for precision in ("fp32", "int8"):
        peak = peaks.get(precision)
        assert peak.gflops > 0 and peak.samples == 1 and peak.threads == 1 and peak.shape == (64, 64, 64)
    bf16 = peaks.get("bf16")
    assert bf16.gflops is not None or bf16.note.startswith("not measured")  # openvino is an optional extra
    flags = cpu_flags()
    if not flags & {"avx512_bf16", "amx_bf16"}:
        assert "no bf16 instructions on this CPU" in bf16.note
        assert bf16.executed == "fp32" or bf16.gflops is None  # OpenVINO says it ran the hint in f32
    if not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        assert "no VNNI" in peaks.get("int8").note


def test_each_precisions_peak_is_taken_at_the_gemm_size_where_it_reached_the_most(tmp_path, monkeypatch):
    """A size that reads low on one CPU (512 on the AVX-512 EPYC, 1024 on a loaded AVX2 one) does not set the peak:
    each precision keeps the size whose best call ran at the most GFLOP/s."""
    from rtdetr_export.bench import peaks as peaks_module

    small, large = (32, 32, 32), (64, 64, 64)
    probe = peaks_module.PeakProbe(tmp_path, threads=1, shapes=(small, large), settle_ms=0)
    probe.activate()
    try:
        probe.sample_until(2)
    finally:
        probe.deactivate()
    # Planted best calls: fp32 faster per FLOP at the small size, int8 at the large one.
    probe.samples["fp32", small], probe.samples["fp32", large] = [1e-3], [1.0]
    probe.samples["int8", small], probe.samples["int8", large] = [1.0], [1e-3]
    result = probe.result()
    assert result.get("fp32").shape == small and result.get("fp32").best_ms == 1e-3
    assert result.get("int8").shape == large and result.get("int8").best_ms == 1e-3
