"""`bench --peer` for a D-FINE: the peer path is transformers' own DFineForObjectDetection with the same weights
(one save_pretrained folder that both load), exported through torch.onnx, and its rows are compared with ours."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.model import DFine
from micro import MICRO_SIZE, micro_dfine_model

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                 reason="the peer path needs transformers"),
              pytest.mark.xdist_group("bench")]  # with test_bench.py's run: two benches on 2 cores time each other


@pytest.fixture(scope="module")
def dfine_peer_folder(tmp_path_factory) -> Path:
    """The micro D-FINE's architecture as a transformers D-FINE with the peer's seeded weights, saved."""
    from rtdetr_export.bench.peer import random_transformers_model, save_transformers_model

    config = micro_dfine_model().config
    return save_transformers_model(random_transformers_model(config), tmp_path_factory.mktemp("peer") / "dfine")


def test_the_d_fine_peer_is_transformers_d_fine_with_the_weights_ours_loads(dfine_peer_folder):
    from rtdetr_export.bench.peer import load_transformers_model
    from rtdetr_export.weights import load_model

    peer = load_transformers_model(dfine_peer_folder, method="discrete")
    assert type(peer).__name__ == "DFineForObjectDetection" and peer.config.decoder_method == "discrete"
    ours = load_model(dfine_peer_folder)
    config = micro_dfine_model().config
    assert isinstance(ours, DFine) and ours.config.hgnet_stage_out_channels == config.hgnet_stage_out_channels
    assert ours.config.decoder_n_points == config.decoder_n_points  # per-level counts: transformers' D-FINE has them
    # The same function (the default sampler on both sides): what makes the report's peer ratio like-for-like.
    peer = load_transformers_model(dfine_peer_folder)
    images = torch.rand(2, 3, MICRO_SIZE, MICRO_SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        theirs, (logits, boxes) = peer(pixel_values=images), ours(images)
    assert float((theirs.logits - logits).abs().max()) <= 1e-4
    assert float((theirs.pred_boxes - boxes).abs().max()) <= 1e-4


def test_a_deim_d_fine_has_no_transformers_peer_and_says_why():
    from rtdetr_export.bench.peer import unsupported_reason

    deim = micro_dfine_model(variant="DEIM", decoder_activation="silu", mlp_activation="silu").config
    assert unsupported_reason(deim) == "transformers' D-FINE has ReLU MLP heads; this model (DEIM-D-FINE) has silu"
    assert unsupported_reason(micro_dfine_model().config) is None


@pytest.mark.slow  # two exports (ours, the peer's) and four timed runners on the micro D-FINE: ~25 s
def test_a_bench_of_a_d_fine_folder_with_peer_compares_transformers_rows_with_ours(dfine_peer_folder, tmp_path):
    folder = tmp_path / "report"
    result = CliRunner().invoke(main, ["bench", "--model", str(dfine_peer_folder), "--peer", "--batch", "1,2",
                                       "--iters", "3", "--warmup", "1", "--e2e-iters", "1", "--threads", "1",
                                       "--report", str(folder), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["peer"] == "transformers" and report["model"]["config"]["max_num_bins"] == 32
    assert report["model"]["exports"]["peer"]["exporter"] == "torch.onnx (TorchScript)"
    targets = {t["name"]: t for t in report["targets"]}
    assert targets["torch-fp32-cpu:peer"]["role"] == "peer"
    ok = [r for r in report["results"] if r["status"] == "ok"]
    peers = [r for r in ok if targets[r["target"]]["role"] == "peer"]
    assert {r["target"] for r in peers} == {"torch-fp32-cpu:peer", "onnxruntime-cpu:peer"}
    assert all(r["parity"]["passed"] for r in ok)  # ours and transformers' D-FINE: the reference's function
    comparison = report["peer_comparison"]
    assert {(c["backend"], c["batch"]) for c in comparison} == {(b, n) for b in ("torch", "onnxruntime")
                                                                 for n in (1, 2)}
    for c in comparison:
        assert math.isclose(c["speedup_p50"], c["peer_p50_ms"] / c["ours_p50_ms"])
        assert c["both_match_reference"] is True
    assert "DFineForObjectDetection" in json.dumps(report["targets"])


@pytest.mark.slow  # builds a D-FINE-N transformers model and calibrates it at 320 px (300 queries need 300 cells): ~10 s
def test_bench_peer_without_a_model_builds_transformers_d_fine_for_a_d_fine_preset(tmp_path):
    from rtdetr_export.bench.options import BenchOptions
    from rtdetr_export.bench.sources import _peer_source

    messages: list[str] = []
    hf, ours = _peer_source(BenchOptions(preset="dfine_n", image_size=320, peer=True), [], tmp_path,
                            messages.append)
    assert type(hf).__name__ == "DFineForObjectDetection" and isinstance(ours, DFine)
    assert ours.config.size == "N" and ours.source.format == "transformers"
    assert "DFineForObjectDetection (dfine_n" in messages[0]
