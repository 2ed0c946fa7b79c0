"""Core guarantees of the reference model, kept small: parity with transformers, fusion, strict loading."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model import prepare_for_deploy
from rtdetr_export.weights import load_model

transformers = pytest.importorskip("transformers")


def _hf_tiny(method: str):
    cfg = transformers.RTDetrV2Config(
        backbone_config=transformers.RTDetrResNetConfig(depths=[1, 1, 1, 1], hidden_sizes=[64, 128, 256, 512],
                                                        layer_type="basic", out_indices=[2, 3, 4]),
        encoder_in_channels=[128, 256, 512], encoder_hidden_dim=64, d_model=64, decoder_in_channels=[64, 64, 64],
        encoder_ffn_dim=128, decoder_ffn_dim=128, encoder_attention_heads=4, decoder_attention_heads=4,
        decoder_layers=2, num_queries=50, hidden_expansion=0.5, num_labels=80, decoder_method=method)
    torch.manual_seed(0)
    model = transformers.RTDetrV2ForObjectDetection(cfg).eval()
    with torch.no_grad():  # the default init ties scores; perturb so the top-k is well defined
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("method", ["default", "discrete"])
def test_tiny_model_from_a_transformers_folder_matches_transformers(method, tmp_path):
    hf = _hf_tiny(method)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf", image_size=320)
    assert ours.config.decoder_method == method
    for seed in (1, 2):
        images = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            want = hf(pixel_values=images)
            logits, boxes = ours(images)
        assert (want.logits - logits).abs().max() <= 1e-4
        assert (want.pred_boxes - boxes).abs().max() <= 1e-4


def test_deploy_fusion_keeps_outputs():
    model = load_model(preset="tiny")
    images = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(images)
        after = prepare_for_deploy(model)(images)
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-5


def test_original_layout_checkpoint_round_trips(tmp_path):
    model = load_model(preset="tiny")
    path = tmp_path / "ckpt.pth"
    torch.save({"ema": {"module": model.state_dict()}}, path)
    loaded = load_model(path, preset="tiny")
    images = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        assert all((a - b).abs().max() == 0 for a, b in zip(model(images), loaded(images)))


def test_a_checkpoint_with_a_missing_key_is_refused_with_its_name(tmp_path):
    state = load_model(preset="tiny").state_dict()
    del state["decoder.enc_score_head.weight"]
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state}, path)
    with pytest.raises(RTDetrExportError, match="decoder.enc_score_head.weight"):
        load_model(path, preset="tiny")


def test_a_folder_without_config_is_a_one_line_cli_error(tmp_path):
    result = CliRunner().invoke(main, ["describe", "--model", str(tmp_path)])
    assert result.exit_code != 0
    assert "no config.json" in result.output and "Traceback" not in result.output
