"""`rtdetr-export bench`: a report folder whose every number is measured, and one-line errors for bad input.

One tiny-preset run (short iterations, one thread so two runners do not fight over the 2 cores) feeds most
tests; with transformers installed it includes the peer rows (same weights through transformers' export path).
Nothing here checks how fast anything is: speed claims come from benchmarks/ reports, not from unit tests.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import time

import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.bench.timing import Rounds, interleaved
from rtdetr_export.cli import main
from rtdetr_export.model.backbone import DownsamplePool
from rtdetr_export.model.deformable_attention import MSDeformableAttention, OffsetPlanes, sample_discrete
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.stats import paired_speedup, rotated, summarize
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share one `bench` run (module fixture bench_run),
# read by every test.
pytestmark = pytest.mark.xdist_group("bench")

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
BATCHES = (1, 2)
ITERS = 3


@pytest.fixture(scope="module")
@costly
def bench_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    folder = work / "report"
    args = ["bench", "--method", "discrete", "--batch", "1,2", "--iters", str(ITERS), "--warmup", "1",
            "--e2e-iters", "2", "--threads", "1", "--report", str(folder), "--json", "--quiet"]
    if HAS_TRANSFORMERS:
        # As benchmarks/run_cpu.sh does: one transformers folder (saved with the default sampler) for both
        # exports, the sampler chosen at load time.
        from rtdetr_export.bench.peer import random_transformers_model, save_transformers_model
        from rtdetr_export.model import preset

        hf_folder = save_transformers_model(random_transformers_model(preset("tiny")), work / "hf_tiny")
        args += ["--model", str(hf_folder), "--peer"]
    else:
        args += ["--preset", "tiny"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.stdout)


def _ok(report):
    return [r for r in report["results"] if r["status"] == "ok"]


def test_report_folder_has_json_markdown_csv_and_png(bench_run):
    folder, printed = bench_run
    assert json.loads((folder / "report.json").read_text()) == printed
    assert (folder / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (folder / "report.md").read_text()
    for heading in ("## Batch 1", "## Batch 2", "## Speed-up over PyTorch eager FP32", "## Parity", "## Machine"):
        assert heading in markdown
    rows = list(csv.DictReader((folder / "report.csv").open()))
    assert len(rows) == len(printed["results"])
    assert {"latency_p50_ms", "throughput_ips", "e2e_p50_ms", "cold_ms", "peak_memory_mb"} <= set(rows[0])


def test_report_records_machine_settings_and_model(bench_run):
    _, report = bench_run
    assert report["schema"] == "rtdetr-export/bench" and report["schema_version"] == 1
    machine = report["machine"]
    assert machine["cpu"]["model"] and machine["cpu"]["logical_cores"] >= 1
    assert {"torch", "onnxruntime", "numpy"} <= set(machine["libraries"])
    assert "load_average" in machine and "git" in machine
    settings = report["settings"]
    assert settings["batches"] == list(BATCHES) and settings["interleaved"] is True
    assert settings["settle_ms"] == Rounds.settle_ms > 0  # other runtimes' spinning threads settle between calls
    assert report["model"]["method"] == "discrete" and report["model"]["input_size"] == [320, 320]


def test_every_backend_times_every_batch_with_ordered_nonconstant_statistics(bench_run):
    _, report = bench_run
    ok = _ok(report)
    names = {r["target"] for r in ok}
    assert {"torch-fp32-cpu", "onnxruntime-cpu:ours"} <= names
    for name in names:
        assert sorted(r["batch"] for r in ok if r["target"] == name) == list(BATCHES)
    for r in ok:
        lat = r["latency_ms"]
        assert lat["n"] == ITERS == len(r["samples_ms"])
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] > 0
        assert math.isclose(r["throughput_ips"], r["batch"] * 1000 / lat["mean"])
        e2e = r["e2e_ms"]
        assert e2e["n"] == 2 and e2e["min"] <= e2e["p50"] <= e2e["max"]
        assert set(r["e2e_stages_ms"]) == {"decode", "preprocess", "infer", "postprocess"}
        assert all(v > 0 for v in r["e2e_stages_ms"].values())
        assert r["cold_ms"] > 0 and r["memory"]["peak_mb"] > 0
    # Measured, not constant: no two rows share their samples, and each row's batches differ.
    assert len({tuple(r["samples_ms"]) for r in ok}) == len(ok)
    for name in names:
        p50s = [r["latency_ms"]["p50"] for r in ok if r["target"] == name]
        assert len(set(p50s)) == len(p50s)


def test_parity_against_the_fp32_reference_is_reported_for_every_row(bench_run):
    _, report = bench_run
    for r in _ok(report):
        parity = r["parity"]
        assert parity["passed"] is True, parity["failures"]
        assert set(parity["outputs"]) == {"logits", "pred_boxes"}
        for entry in parity["outputs"].values():
            assert 0 <= entry["max_abs"] <= entry["threshold"] or parity["flipped_rows"]
            assert entry["mean_abs"] <= entry["max_abs"]


def test_speedups_are_relative_to_pytorch_eager_at_the_same_batch(bench_run):
    _, report = bench_run
    ok = {(r["target"], r["batch"]): r for r in _ok(report)}
    for (name, batch), r in ok.items():
        base = ok[("torch-fp32-cpu", batch)]
        assert math.isclose(r["speedup_vs_torch"]["p50"], base["latency_ms"]["p50"] / r["latency_ms"]["p50"])
    assert all(ok[("torch-fp32-cpu", b)]["speedup_vs_torch"]["p50"] == 1.0 for b in BATCHES)


def _assert_rooflines(report):
    """Every measured row has its roofline: the model's FLOPs x its throughput, over the measured peak of its
    precision; the report holds the FLOP counts (and how they were counted) and the peaks."""
    basis = report["roofline"]
    assert basis["convention"].startswith("1 multiply-add = 2 FLOPs") and basis["method"]
    for precision in ("fp32", "bf16", "int8"):
        peak = basis["peaks"][precision]
        assert peak["precision"] == precision and peak["runtime"] and len(peak["shape"]) == 3
        assert peak["gflops"] is None or math.isclose(peak["gflops"], peak["flops"] / peak["best_ms"] / 1e6)
    assert basis["peaks"]["fp32"]["gflops"] > 0 and basis["peaks"]["int8"]["gflops"] > 0
    for r in _ok(report):
        row = r["roofline"]
        count = basis["flops"][row["counted_from"]]
        assert row["flops_per_image"] == count["flops_per_image"] == count["flops"] / count["batch"] > 0
        assert math.isclose(row["achieved_gflops"], row["flops_per_image"] * r["throughput_ips"] / 1e9)
        assert row["peak_gflops"] == basis["peaks"][row["peak_precision"]]["gflops"]
        assert math.isclose(row["fraction_of_peak"], row["achieved_gflops"] / row["peak_gflops"])


def test_every_row_has_its_roofline_against_the_peak_measured_in_the_same_run(bench_run):
    folder, report = bench_run
    _assert_rooflines(report)
    source = {r["target"]: r["roofline"]["counted_from"] for r in _ok(report)}
    assert source["torch-fp32-cpu"] == "ours"  # PyTorch runs no graph: our FP32 graph's count
    if HAS_TRANSFORMERS:  # transformers' model, run eagerly: its own export's graph
        assert source["torch-fp32-cpu:peer"] == source["onnxruntime-cpu:peer"] == "peer"
    assert "of FP32 peak" in (folder / "report.md").read_text()


def test_unavailable_backends_are_listed_as_skipped_with_a_reason(bench_run):
    folder, report = bench_run
    tensorrt = [t for t in report["targets"] if t["backend"] == "tensorrt"]
    assert tensorrt and all(t["status"] == "skipped" and t["reason"] for t in tensorrt)
    assert "## Not measured" in (folder / "report.md").read_text()


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="the peer path needs transformers")
def test_peer_rows_run_the_same_weights_and_are_compared_with_ours(bench_run):
    _, report = bench_run
    roles = {t["name"]: t["role"] for t in report["targets"]}
    peers = [r for r in _ok(report) if roles[r["target"]] == "peer"]
    assert {r["target"] for r in peers} == {"torch-fp32-cpu:peer", "onnxruntime-cpu:peer"}
    assert all(r["parity"]["passed"] for r in peers)  # the same function as our reference
    assert report["model"]["source"]["format"] == "transformers"
    comparison = report["peer_comparison"]
    assert {(c["backend"], c["batch"]) for c in comparison} == {(b, n) for b in ("torch", "onnxruntime")
                                                                 for n in BATCHES}
    for c in comparison:
        assert math.isclose(c["speedup_p50"], c["peer_p50_ms"] / c["ours_p50_ms"])
        assert c["speedup_paired"] > 0 and c["both_match_reference"] is True


@pytest.mark.parametrize("args, message", [
    (["--backends", "torch,foo"], "unknown backend 'foo'"),
    (["--batch", "0"], "--batch takes comma-separated positive integers"),
    (["--batch", "1,x"], "--batch takes comma-separated positive integers"),
    (["--iters", "0"], "--iters must be >= 1"),
    (["--iters", "5", "--seconds", "2"], "give --iters or --seconds, not both"),
    (["--settle-ms", "-1"], "--settle-ms must be >= 0"),
    (["missing.onnx"], "missing.onnx: no such file"),
    (["notes.txt"], "unknown artifact type"),
    (["garbage.onnx"], "is not an ONNX file"),
], ids=["unknown-backend", "batch-0", "batch-not-int", "iters-0", "iters-and-seconds", "settle-negative",
        "missing-artifact",
        "unknown-artifact", "unreadable-artifact"])
def test_bad_input_gives_a_one_line_error(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not a protobuf\xff" * 8)
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(main, ["bench", "--preset", "tiny", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_an_existing_report_is_not_replaced_without_force(tmp_path):
    (tmp_path / "report.json").write_text("{}")
    result = CliRunner().invoke(main, ["bench", "--preset", "tiny", "--report", str(tmp_path)])
    assert result.exit_code != 0 and "already holds a report" in result.output
    assert (tmp_path / "report.json").read_text() == "{}"


def test_summary_statistics_are_ordered_and_use_the_sample_std():
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats["min"], stats["p50"], stats["max"], stats["mean"]) == (1.0, 3.0, 5.0, 3.0)
    assert stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert math.isclose(stats["std"], math.sqrt(2.5))
    assert summarize([7.0])["std"] == 0.0


def test_paired_speedup_cancels_load_shared_by_a_round():
    # Round 2 ran under load that slowed both runners 3x; the per-round ratio stays 2.
    assert paired_speedup([20.0, 60.0, 20.0], [10.0, 30.0, 10.0]) == 2.0


def test_interleaving_gives_every_runner_every_position():
    names = ["a", "b", "c"]
    firsts = [rotated(names, r)[0] for r in range(3)]
    assert sorted(firsts) == names


def test_time_budget_rounds_stop_once_every_runner_has_its_seconds():
    rounds = Rounds(iters=None, seconds=1.0)
    assert not rounds.done(1, [5000.0, 5000.0])  # at least two rounds
    assert not rounds.done(3, [1500.0, 900.0])
    assert rounds.done(3, [1500.0, 1000.0])
    assert Rounds(iters=4).done(4, []) and not Rounds(iters=4).done(3, [])


def test_interleaved_rounds_pause_before_each_call_so_the_last_runtimes_threads_settle():
    calls = []

    class Clocked:
        def infer(self, feed):
            calls.append(time.perf_counter())
            return {}

    samples = interleaved({"a": Clocked(), "b": Clocked()}, {}, Rounds(iters=3, settle_ms=20))
    assert [len(v) for v in samples.values()] == [3, 3] and len(calls) == 6
    assert min(b - a for a, b in zip(calls, calls[1:])) >= 0.019
    calls.clear()
    interleaved({"alone": Clocked()}, {}, Rounds(iters=3, settle_ms=1000))  # one runner: nothing to settle
    assert calls[-1] - calls[0] < 0.5


# -- the performance rewrites the reports measure compute what they replace --------------------------------------
def _discrete_projecting_every_cell(attn, memory, loc, weights, shapes):
    """The plain order of operations: value_proj on every cell, then per head and level read the nearest cell."""
    batch, queries, heads, points, _ = loc.shape
    value = attn.value_proj(memory)
    sampled = []
    for (h, w), level_value, level_loc in zip(shapes, value.split([h * w for h, w in shapes], 1),
                                              loc.split(list(attn.num_points), 3)):
        level_value = level_value.reshape(batch, h * w, heads, -1).permute(0, 2, 3, 1).reshape(batch * heads, -1, h, w)
        level_loc = level_loc.permute(0, 2, 1, 3, 4).reshape(batch * heads, queries, -1, 2)
        sampled.append(sample_discrete(level_value, level_loc))
    out = (torch.cat(sampled, -1) * weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, queries, points)).sum(-1)
    return out.reshape(batch, -1, queries).transpose(1, 2)


def test_sampling_offsets_read_as_planes_are_the_trained_offsets_with_x_and_y_apart():
    torch.manual_seed(0)
    layer = OffsetPlanes(16, 2 * 6)  # 6 points; trained rows are (point, x | y)
    query = torch.randn(3, 5, 16)
    trained = torch.nn.functional.linear(query, layer.weight, layer.bias).reshape(3, 5, 6, 2)
    planes = layer(query).reshape(3, 5, 2, 6)
    assert torch.allclose(planes, trained.permute(0, 1, 3, 2), rtol=0, atol=1e-6)
    assert set(layer.state_dict()) == {"weight", "bias"} and layer.weight.shape == (12, 16)  # loads as trained


def test_discrete_attention_projecting_after_sampling_equals_projecting_every_cell():
    torch.manual_seed(0)
    attn = MSDeformableAttention(64, 4, (4, 2, 3), Sampler.GATHER_NEAREST, 0.5).eval()
    shapes = [(10, 12), (5, 6), (3, 3)]
    memory = torch.randn(2, sum(h * w for h, w in shapes), 64)
    query, boxes = torch.randn(2, 30, 64), torch.rand(2, 30, 4) * 0.8 + 0.1
    with torch.no_grad():
        # The trained layout of the offsets ((head, point, x | y) rows), read without the model's planes.
        offsets = torch.nn.functional.linear(query, attn.sampling_offsets.weight, attn.sampling_offsets.bias)
        offsets = offsets.reshape(2, 30, 4, 9, 2)
        weights = attn.attention_weights(query).reshape(2, 30, 4, 9).softmax(-1)
        scale = attn.num_points_scale[:, None]
        loc = boxes[:, :, None, None, :2] + offsets * scale * boxes[:, :, None, None, 2:] * 0.5
        planes = loc.permute(0, 1, 4, 2, 3)  # x and y planes
        fast = attn.attend_nearest(memory, planes, weights, shapes)
        dispatched = attn.attend(memory, planes, weights, shapes)  # the layer's sampler picks attend_nearest
        every_cell = _discrete_projecting_every_cell(attn, memory, loc, weights, shapes)
    assert torch.equal(dispatched, fast)
    assert float((fast - every_cell).abs().max()) < 1e-5


@pytest.mark.parametrize("height, width", [(8, 8), (7, 9), (5, 6)])
def test_shortcut_pool_equals_ceil_mode_average_pooling(height, width):
    x = torch.randn(2, 3, height, width)
    assert torch.equal(DownsamplePool()(x), torch.nn.AvgPool2d(2, 2, 0, ceil_mode=True)(x))


# -- the fast tier's bench: a micro artifact file (tests/micro.py), no export, no peer ------------------------------------
def test_a_bench_of_an_artifact_file_writes_every_report_file_and_passes_parity(micro_fp32, tmp_path):
    folder = tmp_path / "report"
    # No pause between calls (--settle-ms 0): the report's files are under test here, not the timing.
    result = CliRunner().invoke(main, ["bench", str(micro_fp32), "--batch", "1", "--iters", "2", "--warmup", "1",
                                       "--e2e-iters", "1", "--threads", "1", "--settle-ms", "0", "--report",
                                       str(folder), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["settle_ms"] == 0
    assert {p.name for p in folder.iterdir()} == {"report.json", "report.md", "report.csv", "latency.png"}
    ours = [r for r in _ok(report) if r["target"] != "torch-fp32-cpu"]
    assert ours and all(r["parity"]["passed"] for r in ours)
    assert all(r["latency_ms"]["n"] == 2 and r["memory"]["peak_mb"] > 0 for r in _ok(report))
    _assert_rooflines(report)
    assert "## Roofline (compute only)" in (folder / "report.md").read_text()
    rows = list(csv.DictReader((folder / "report.csv").open()))
    assert all(float(row["fraction_of_peak"]) > 0 for row in rows if row["status"] == "ok")


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="the peer path needs transformers")
def test_the_peer_is_a_transformers_model_of_our_architecture_and_says_what_it_cannot_express(tmp_path):
    from dataclasses import replace

    from micro import micro_model
    from rtdetr_export.bench.peer import load_transformers_model, random_transformers_model, save_transformers_model
    from rtdetr_export.errors import RTDetrExportError
    from rtdetr_export.weights import load_model

    config = micro_model().config
    folder = save_transformers_model(random_transformers_model(config), tmp_path / "peer")
    peer = load_transformers_model(folder, method="discrete")
    assert peer.config.d_model == config.d_model and peer.config.num_queries == config.num_queries
    assert peer.config.decoder_method == "discrete"
    ours = load_model(folder)  # the folder a bench --peer run reads both models from
    assert (ours.config.backbone_widths, ours.config.encoder_hidden_dim) == (config.backbone_widths,
                                                                              config.encoder_hidden_dim)
    per_level_points = tuple(range(1, config.num_feature_levels + 1))
    with pytest.raises(RTDetrExportError, match="transformers has one point count for all levels"):
        random_transformers_model(replace(config, decoder_n_points=per_level_points))
