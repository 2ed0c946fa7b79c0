"""`bench --peer` for DEIMv2: the peer is transformers' own Deimv2ForObjectDetection with the same weights (one
save_pretrained folder that both load). The Lite sizes have none: transformers cannot read their shared FDR head back
from its own folder (tests/model/test_deimv2_parity.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.model import Deimv2, deimv2_preset

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                 reason="the peer path needs transformers"),
              pytest.mark.xdist_group("bench")]  # with test_bench.py's run: two benches on 2 cores time each other

SIZE = 128
# DEIMv2-N's layout (hybrid encoder, gate, one FDR head per layer) narrowed to width 32 at 128 px.
NARROW_N = dict(encoder_hidden_dim=32, encoder_ffn_dim=64, encoder_heads=4, d_model=32, decoder_heads=4,
                decoder_ffn_dim=64, num_queries=30, image_size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def deimv2_peer_folder(tmp_path_factory) -> Path:
    from rtdetr_export.bench.peer import random_transformers_model, save_transformers_model

    config = deimv2_preset("deimv2_n", **NARROW_N)
    return save_transformers_model(random_transformers_model(config), tmp_path_factory.mktemp("peer") / "deimv2")


def test_the_deimv2_peer_is_transformers_deimv2_with_the_weights_ours_loads(deimv2_peer_folder):
    from rtdetr_export.bench.peer import load_transformers_model
    from rtdetr_export.weights import load_model

    peer = load_transformers_model(deimv2_peer_folder, method="discrete")
    assert type(peer).__name__ == "Deimv2ForObjectDetection" and peer.config.decoder_method == "discrete"
    peer = load_transformers_model(deimv2_peer_folder)
    ours = load_model(deimv2_peer_folder)
    assert isinstance(ours, Deimv2) and ours.config.encoder_type == "hybrid"
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        theirs, (logits, boxes) = peer(pixel_values=images), ours(images)
    assert float((theirs.logits - logits).abs().max()) <= 1e-4
    assert float((theirs.pred_boxes - boxes).abs().max()) <= 1e-4


def test_a_lite_deimv2_has_no_transformers_peer_and_says_why():
    from rtdetr_export.bench.peer import unsupported_reason

    assert unsupported_reason(deimv2_preset("deimv2_pico")) == (
        "transformers cannot read back a DEIMv2 with a shared FDR head (share_bbox_head: the Lite sizes Atto, Femto, "
        "Pico) from its own folder; this model is DEIMv2-Pico")
    assert unsupported_reason(deimv2_preset("deimv2_n")) is None


@pytest.mark.slow  # two exports (ours, the peer's) and four timed runners on a narrowed DEIMv2-N: ~25 s
def test_a_bench_of_a_deimv2_folder_with_peer_compares_transformers_rows_with_ours(deimv2_peer_folder, tmp_path):
    result = CliRunner().invoke(main, ["bench", "--model", str(deimv2_peer_folder), "--peer", "--batch", "1",
                                       "--iters", "3", "--warmup", "1", "--e2e-iters", "1", "--threads", "1",
                                       "--settle-ms", "0", "--report", str(tmp_path / "report"), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["peer"] == "transformers"
    targets = {t["name"]: t for t in report["targets"]}
    ok = [r for r in report["results"] if r["status"] == "ok"]
    assert {r["target"] for r in ok if targets[r["target"]]["role"] == "peer"} == {"torch-fp32-cpu:peer",
                                                                                   "onnxruntime-cpu:peer"}
    assert all(r["parity"]["passed"] for r in ok)  # ours and transformers' DEIMv2: the reference's function
