"""``rtdetr-export describe``: load a model and show its architecture and where its weights came from."""

from __future__ import annotations

import dataclasses

import click

from rtdetr_export.cli.common import build_model, emit_json
from rtdetr_export.cli.options import model_options
from rtdetr_export.model.deimv2_config import Deimv2Config
from rtdetr_export.model.dfine_config import DFineConfig


@click.command()
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable description.")
def describe(model_path: str | None, preset: str | None, method: str | None, image_size: int | tuple[int, int] | None,
             as_json: bool) -> None:
    """Load the reference model (checking every weight) and describe it."""
    model = build_model(model_path, preset, method, image_size, quiet=as_json)
    config = model.config
    info = {
        "model": config.model_name,
        "source": dataclasses.asdict(model.source),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": config.to_dict(),
    }
    if as_json:
        emit_json(info)
        return
    click.echo(f"model       {config.model_name}")
    click.echo(f"weights     {model.source.format}  {model.source.path or ''}")
    if model.source.hub:
        click.echo(f"hub         {model.source.hub.pinned_id} (asked for {model.source.hub.requested})")
    click.echo(f"parameters  {info['parameters']:,}")
    if isinstance(config, DFineConfig):
        click.echo(f"backbone    HGNetv2 stage outputs {list(config.hgnet_stage_out_channels)}, blocks "
                   f"{list(config.hgnet_stage_num_blocks)}")
    else:
        click.echo(f"backbone    ResNet-vd {config.backbone_block} blocks {list(config.backbone_blocks)}")
    lite = isinstance(config, Deimv2Config) and config.encoder_type == "lite"
    click.echo(f"encoder     {'Lite (no AIFI), ' if lite else ''}hidden {config.encoder_hidden_dim}, "
               f"expansion {config.hidden_expansion}")
    click.echo(f"decoder     {config.decoder_layers} layers (output from layer {config.eval_layer}), "
               f"points {list(config.decoder_n_points)}, method {config.decoder_method}")
    click.echo(f"input       {config.image_size[0]}x{config.image_size[1]}, {config.num_queries} queries, "
               f"{config.num_classes} classes")
