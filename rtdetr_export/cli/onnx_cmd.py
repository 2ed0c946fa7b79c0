"""``rtdetr-export onnx``: export, simplify, check and verify an ONNX file."""

from __future__ import annotations

import click

from rtdetr_export.cli.common import build_model, emit_json, log, model_options
from rtdetr_export.export.heads import HEADS
from rtdetr_export.export.onnx_export import DEFAULT_OPSET, OnnxExportOptions, export_onnx


@click.command("onnx")
@model_options
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset (16-20; 13+ discrete).")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic (verified at 1 and 4).")
@click.option("--head", type=click.Choice(HEADS), default="raw", show_default=True,
              help="raw: logits + pred_boxes; detections: labels, boxes (px), scores with orig_target_sizes.")
@click.option("--top-k", type=int, default=300, show_default=True, help="Detections kept by the detections head.")
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Clean the graph with onnxslim.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check parity on ONNX Runtime.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of real images for verification (default: synthetic scenes).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT and its .json sidecar.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the provenance record as JSON.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
def onnx_command(model_path, preset, method, image_size, opset, batch, dynamic_batch, head, top_k, simplify,
                 verify, images, force, quiet, as_json, output) -> None:
    """Export the model to ONNX and prove the file computes what PyTorch computes."""
    progress = (lambda message: None) if quiet or as_json else log
    options = OnnxExportOptions(opset=opset, batch=batch, dynamic_batch=dynamic_batch, head=head, top_k=top_k,
                                simplify=simplify, verify=verify, images=images)
    model = build_model(model_path, preset, method, image_size, quiet=quiet or as_json)
    result = export_onnx(model, output, options, force=force, log=progress)
    if as_json:
        emit_json(result.provenance)
    elif not quiet:
        verification = result.provenance["verification"]
        status = "verified" if verification else "NOT verified"
        click.echo(f"wrote {result.path} ({status}) and {result.sidecar}")
