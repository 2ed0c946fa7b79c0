"""Deploy-time rewrites keep outputs: RepVGG fusion, BatchNorm folding, size-dependent constants, eval_idx.

Weights come from the perturbed transformers oracles of conftest.py (well-separated scores, so top-k query
selection is well defined). Fused vs unfused tolerance: 1e-5 (measured ~3e-6).
"""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import compare_detectors, run_ours
from micro import MICRO_SIZE, micro_model
from rtdetr_export.model import fold_batchnorm, fuse_repvgg, prepare_for_deploy
from rtdetr_export.model import query_selection
from rtdetr_export.model import aifi as aifi_module
from rtdetr_export.model.ccfm import RepVggBlock
from rtdetr_export.model.query_selection import INVALID_ANCHOR_LOGIT, generate_anchors
from rtdetr_export.weights import load_model

FUSION_TOL = 1e-5
SIZE_TOL = 1e-5


@pytest.fixture(scope="module")
def folder_model(hf_case, ours_from_folder):
    def get(preset_name: str):
        case = hf_case(preset_name, "default")
        model, outputs = ours_from_folder(case)
        return case, model, outputs
    return get


@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("r18vd", marks=pytest.mark.slow)])
def test_prepare_for_deploy_keeps_outputs(preset_name, folder_model):
    case, model, want = folder_model(preset_name)
    deployed = prepare_for_deploy(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    blocks = [m for m in deployed.modules() if isinstance(m, RepVggBlock)]
    assert len(blocks) == 4 * model.config.csp_blocks and all(b.fused for b in blocks)
    result = compare_detectors(want, run_ours(deployed, case.images), FUSION_TOL)
    print(f"{preset_name}: fused vs unfused ordered {result.ordered_max_diff:.3g}, matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= FUSION_TOL


def test_fusion_and_folding_are_idempotent(folder_model):
    case, model, _ = folder_model("tiny")
    deployed = prepare_for_deploy(copy.deepcopy(model))
    with torch.no_grad():
        once = deployed(case.images)
    assert fuse_repvgg(deployed) == 0
    assert fold_batchnorm(deployed) == 0
    with torch.no_grad():
        twice = deployed(case.images)
    assert all(torch.equal(a, b) for a, b in zip(once, twice))


@pytest.mark.slow
def test_repvgg_fusion_alone_and_folding_alone_each_keep_outputs(folder_model):
    case, model, want = folder_model("tiny")
    for rewrite in (fuse_repvgg, fold_batchnorm):
        rewritten = copy.deepcopy(model)
        assert rewrite(rewritten) > 0
        assert compare_detectors(want, run_ours(rewritten, case.images), FUSION_TOL).matched_max_diff <= FUSION_TOL


@pytest.mark.parametrize("height, width", [(256, 384), (384, 256), (448, 448)])
def test_set_image_size_rebuilds_anchors_and_position_embeddings(height, width, folder_model, images_for, monkeypatch):
    case, model, _ = folder_model("tiny")
    resized = copy.deepcopy(model)
    resized.set_image_size(height, width)
    assert resized.config.image_size == (height, width)
    shapes = [(height // s, width // s) for s in (8, 16, 32)]
    anchors, valid = generate_anchors(shapes)
    assert torch.equal(resized.decoder.anchors, anchors)
    assert torch.equal(resized.decoder.valid_mask, valid)
    assert resized.encoder.encoder[0].pos_embed.shape == (1, shapes[-1][0] * shapes[-1][1], 64)

    fresh = load_model(case.folder, image_size=(height, width))
    images = images_for(height, width)
    with torch.no_grad():
        want = fresh(images)
        # The forward must use the rebuilt constants, not compute them on the fly.
        monkeypatch.setattr(query_selection, "generate_anchors", _must_not_be_called)
        monkeypatch.setattr(aifi_module, "sincos_position_embedding", _must_not_be_called)
        got = resized(images)
    assert float((want[0] - got[0]).abs().max()) <= SIZE_TOL
    assert float((want[1] - got[1]).abs().max()) <= SIZE_TOL


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("constant recomputed during forward")


def test_a_forward_at_the_transposed_size_matches_a_model_built_for_that_size(folder_model, images_for):
    case, _, _ = folder_model("tiny")
    built_wide = load_model(case.folder, image_size=(256, 384))
    built_tall = load_model(case.folder, image_size=(384, 256))
    images = images_for(384, 256)
    with torch.no_grad():
        want = built_tall(images)
        got = built_wide(images)  # documented: "a forward at another size computes them on the fly"
    assert float((want[0] - got[0]).abs().max()) <= SIZE_TOL
    assert float((want[1] - got[1]).abs().max()) <= SIZE_TOL


def test_a_forward_at_an_unprepared_size_computes_the_constants_on_the_fly(folder_model, images_for):
    case, model, _ = folder_model("tiny")  # built for 320x320
    fresh = load_model(case.folder, image_size=(256, 384))
    images = images_for(256, 384)
    with torch.no_grad():
        want, got = fresh(images), model(images)
    assert float((want[0] - got[0]).abs().max()) <= SIZE_TOL
    assert float((want[1] - got[1]).abs().max()) <= SIZE_TOL


@pytest.mark.parametrize("height, width", [(320, 320), (640, 640), (256, 384)])
def test_anchors_are_finite_and_invalid_cells_saturate(height, width):
    model = load_model(preset="tiny", image_size=(height, width))
    anchors, valid = model.decoder.anchors, model.decoder.valid_mask
    cells = sum((height // s) * (width // s) for s in (8, 16, 32))
    assert anchors.shape == (1, cells, 4) and valid.shape == (1, cells, 1)
    assert torch.isfinite(anchors).all()
    # Expected boxes: cell centres, width/height 0.05 * 2**level; valid when every coordinate is in (0.01, 0.99).
    boxes = []
    for level, s in enumerate((8, 16, 32)):
        h, w = height // s, width // s
        cy, cx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        wh = torch.full((h * w,), 0.05 * 2 ** level)
        boxes.append(torch.stack([cx.flatten(), cy.flatten(), wh, wh], -1))
    boxes = torch.cat(boxes)[None]
    want_valid = ((boxes > 0.01) & (boxes < 0.99)).all(-1, keepdim=True)
    assert torch.equal(valid, want_valid)
    if height == 640:
        assert not valid.all()  # the outermost stride-8 cells of a 640 input are invalid
    inside = valid.expand_as(anchors)
    assert (anchors[~inside] == INVALID_ANCHOR_LOGIT).all()
    assert torch.allclose(torch.sigmoid(anchors[inside]), boxes[inside], atol=1e-6)
    for dtype in (torch.float32, torch.float16):
        assert torch.sigmoid(torch.tensor(INVALID_ANCHOR_LOGIT, dtype=dtype)) == 1.0


def _with_layer_weights(model, layer: int, fill):
    model = copy.deepcopy(model)
    prefixes = (f"decoder.decoder.layers.{layer}.", f"decoder.dec_score_head.{layer}.",
                f"decoder.dec_bbox_head.{layer}.")
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(prefixes):
                param.copy_(torch.zeros_like(param) if fill == "zero" else torch.randn(param.shape, generator=g))
    return model


@pytest.mark.parametrize("eval_idx, layer_1_matters", [(0, False), (-1, True)])
def test_the_decoder_stops_at_eval_idx(eval_idx, layer_1_matters, images_for):
    model = micro_model(eval_idx=eval_idx)  # the tiny preset's two decoder layers, at the micro's width
    images = images_for(MICRO_SIZE, MICRO_SIZE)
    with torch.no_grad():
        zeroed = _with_layer_weights(model, 1, "zero")(images)
        random = _with_layer_weights(model, 1, "random")(images)
    same = all(torch.equal(a, b) for a, b in zip(zeroed, random))
    assert same is not layer_1_matters
