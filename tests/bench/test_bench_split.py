"""`rtdetr-export bench` on a split artifact: timed like any ONNX file, with graph 1, host step and graph 2 reported
beside the total, and a one-line error, with no report written, for a split whose files do not belong together."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from rtdetr_export.artifact import open_artifact
from rtdetr_export.backends import artifact_runner
from rtdetr_export.backends.split_runner import SPLIT_STAGES
from rtdetr_export.bench.timing import timed
from rtdetr_export.cli import main
from micro import MICRO_SIZE as SIZE
from split_cases import one_line_error

ITERS = 4


@pytest.fixture(scope="module")
def bench_split(micro_split, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_split") / "report"
    result = CliRunner().invoke(main, ["bench", str(micro_split), "--backends", "onnxruntime", "--batch",
                                       "1,2", "--iters", str(ITERS), "--warmup", "1", "--e2e-iters", "1", "--threads",
                                       "1", "--settle-ms", "0", "--report", str(folder), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.stdout)


def test_bench_times_a_split_and_reports_its_stages(bench_split, micro_split):
    folder, report = bench_split
    name = f"onnxruntime-cpu:{micro_split.name}"
    rows = [r for r in report["results"] if r["target"] == name]
    assert [(r["batch"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")]
    artifact = report["model"]["artifacts"][0]
    assert (artifact["kind"], artifact["batch"], artifact["ours"]) == ("split", "dynamic", True)
    for row in rows:
        assert row["parity"]["passed"] is True
        stages = row["stages_ms"]
        assert list(stages) == list(SPLIT_STAGES)
        assert all(stats["n"] == row["latency_ms"]["n"] == ITERS and stats["min"] > 0 for stats in stages.values())
        # Means add up (medians do not): each call's three stages lie within its total.
        assert sum(stats["mean"] for stats in stages.values()) <= row["latency_ms"]["mean"]
    markdown = (folder / "report.md").read_text()
    assert "| backend | total | graph 1 | host step | graph 2 |" in markdown and f"| {name} |" in markdown
    table = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text())))
    assert [float(r["graph1_p50_ms"]) for r in table if r["target"] == name] == \
        [r["stages_ms"]["graph1"]["p50"] for r in rows]


def test_a_splits_flops_are_both_graphs_counted_at_the_timed_batch(bench_split, micro_split):
    from rtdetr_export.artifact import load_onnx
    from rtdetr_export.bench.flops import count_flops
    from rtdetr_export.bench.roofline import graph_input_shapes

    _, report = bench_split
    count = report["roofline"]["flops"][micro_split.name]
    assert count["graphs"] == 2 and count["batch"] == 1
    graphs = [load_onnx(micro_split.parent / graph.file) for graph in open_artifact(micro_split).graphs.values()]
    each = [count_flops(graph, graph_input_shapes(graph, 1, (SIZE, SIZE))) for graph in graphs]
    assert count["flops"] == sum(c.flops for c in each) > 0  # the host step's top-k is not counted
    assert {r["roofline"]["counted_from"] for r in report["results"] if r["status"] == "ok"} == {micro_split.name}


def test_a_split_runners_stages_lie_within_its_call(micro_split):
    record = open_artifact(micro_split)
    feed = {"images": np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)}
    with artifact_runner(micro_split, record) as runner:
        total, _ = timed(lambda: runner.infer(feed))
        assert set(runner.stage_ms) == set(SPLIT_STAGES) and all(ms > 0 for ms in runner.stage_ms.values())
        assert sum(runner.stage_ms.values()) <= total


@pytest.mark.parametrize("case", ["missing", "mixed"])
def test_a_split_whose_files_do_not_belong_together_is_one_line_and_no_report_is_written(broken_split, tmp_path,
                                                                                        case):
    sidecar, why = broken_split[case]
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["bench", str(sidecar), "--report", str(report)])
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert str(sidecar.parent / "micro.decoder.onnx") in line and why in line
    assert not report.exists()
