"""Detectors that look like RT-DETR are refused in one line that names them and what is supported.

Folders are written with transformers' own config classes; checkpoints are minimal state dicts with each
architecture's real key names (RF-DETR: roboflow/rf-detr;
DETR / Deformable DETR: the facebookresearch / fundamentalvision releases), wrapped the way each repository saves
them. RF-DETR and Deformable DETR pickle their ``argparse`` arguments beside the weights, which ``weights_only``
loading refuses; they must still be named, and nothing in them may run.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.weights import load_model
from cli_errors import assert_one_line_error

transformers = pytest.importorskip("transformers")

SUPPORTED = "supported are RT-DETR v1 and RT-DETRv2 with a ResNet-vd backbone"

FOLDERS = {  # transformers config class -> what the refusal calls it (D-FINE and DEIMv2 HGNetv2 folders load:
    # test_dfine_parity.py, test_deimv2_parity.py)
    "DeformableDetrConfig": "a Deformable DETR model",
    "DetrConfig": "a DETR model",
    "RfDetrConfig": "an RF-DETR model",
}


def _tensors(keys: list[str]) -> dict[str, torch.Tensor]:
    return {key: torch.zeros(2, 2) if key.endswith("weight") else torch.zeros(2) for key in keys}


RF_DETR_KEYS = ["backbone.0.encoder.encoder.embeddings.cls_token",
                "backbone.0.encoder.encoder.encoder.layer.0.attention.attention.query.weight",
                "backbone.0.projector.stages.0.0.cv1.conv.weight",
                "transformer.decoder.layers.0.cross_attn.sampling_offsets.weight", "refpoint_embed.weight",
                "query_feat.weight", "class_embed.weight", "bbox_embed.layers.0.weight"]
DEFORMABLE_DETR_KEYS = ["backbone.0.body.conv1.weight", "transformer.level_embed",
                        "transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
                        "transformer.reference_points.weight", "class_embed.0.weight", "query_embed.weight",
                        "input_proj.0.0.weight"]
DETR_KEYS = ["backbone.0.body.conv1.weight", "transformer.encoder.layers.0.self_attn.in_proj_weight",
             "transformer.decoder.layers.0.multihead_attn.in_proj_weight", "transformer.decoder.norm.weight",
             "class_embed.weight", "bbox_embed.layers.0.weight", "query_embed.weight", "input_proj.weight"]

CHECKPOINTS = {  # name -> (what torch.save writes, what the refusal calls it, the key it cites)
    "rf-detr": ({"model": _tensors(RF_DETR_KEYS),
                 "args": argparse.Namespace(encoder="dinov2_windowed_small", num_classes=90)},
                "an RF-DETR checkpoint", "backbone.0.encoder.encoder.embeddings.cls_token"),
    "deformable-detr": ({"model": _tensors(DEFORMABLE_DETR_KEYS), "epoch": 49,
                         "args": argparse.Namespace(with_box_refine=True, two_stage=False)},
                        "a Deformable DETR checkpoint", "transformer.encoder.layers.0.self_attn.sampling_offsets."),
    "detr": ({"model": _tensors(DETR_KEYS)}, "a DETR checkpoint", "transformer.decoder."),
}


@pytest.fixture(params=list(FOLDERS))
def lookalike_folder(request, tmp_path):
    config = getattr(transformers, request.param)()
    config.save_pretrained(tmp_path)
    return tmp_path, FOLDERS[request.param], config.model_type


@pytest.fixture(params=list(CHECKPOINTS))
def lookalike_checkpoint(request, tmp_path):
    content, what, evidence = CHECKPOINTS[request.param]
    path = tmp_path / f"{request.param}.pth"
    torch.save(content, path)
    return path, what, evidence


def test_a_lookalike_folder_is_refused_by_name_from_the_api_and_the_cli(lookalike_folder):
    folder, what, model_type = lookalike_folder
    with pytest.raises(RTDetrExportError) as info:
        load_model(folder)
    assert str(info.value) == (f"{folder} holds {what} (config.json model_type {model_type!r}), which rtdetr-export "
                               f"does not convert; {SUPPORTED}: transformers rt_detr / rt_detr_v2 folders, original "
                               "lyuwenyu/RT-DETR .pth checkpoints, or Hub model ids of those; and D-FINE as "
                               "transformers d_fine folders or original D-FINE / DEIM-D-FINE .pth checkpoints; DEIM-RT-DETRv2 .pth "
                               "checkpoints; DEIMv2's HGNetv2 sizes (Atto, Femto, Pico, N) as transformers deimv2 "
                               "folders or original DEIMv2 .pth checkpoints")
    assert_one_line_error(CliRunner().invoke(main, ["describe", "--model", str(folder)]), what)


def test_a_deimv2_folder_with_a_dinov3_backbone_is_refused_by_name(tmp_path):
    """DEIMv2-S and up put a DINOv3 ViT where the HGNetv2 sizes have HGNetv2: named, before any weight is read."""
    transformers.Deimv2Config(backbone_config=transformers.DINOv3ViTConfig(out_indices=[5, 8, 11])).save_pretrained(
        tmp_path)
    with pytest.raises(RTDetrExportError) as info:
        load_model(tmp_path)
    assert str(info.value).startswith(f"{tmp_path} holds a DEIMv2 model with a DINOv3 backbone (DEIMv2-S, M, L or X)")
    assert SUPPORTED in str(info.value)
    assert_one_line_error(CliRunner().invoke(main, ["describe", "--model", str(tmp_path)]), "DINOv3")


def test_a_lookalike_checkpoint_is_refused_by_name_from_the_api_and_the_cli(lookalike_checkpoint):
    path, what, evidence = lookalike_checkpoint
    with pytest.raises(RTDetrExportError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path} is {what} (it has {evidence}") and SUPPORTED in message
    line = assert_one_line_error(CliRunner().invoke(main, ["onnx", "--model", str(path), "-o", str(path) + ".onnx"]),
                                 what)
    assert "missing keys" not in line and "shape mismatch" not in line


def test_arguments_pickled_beside_the_weights_are_not_unpickled_to_recognise_the_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "rf-detr.pth"
    torch.save(CHECKPOINTS["rf-detr"][0], path)
    rebuilt = []  # unpickling a Namespace ends in its __setstate__
    monkeypatch.setattr(argparse.Namespace, "__setstate__", lambda self, state: rebuilt.append(state), raising=False)
    with pytest.raises(RTDetrExportError, match="an RF-DETR checkpoint"):
        load_model(path)
    assert rebuilt == []
