"""``rtdetr-export onnx``: export, simplify, check and verify an ONNX file."""

from __future__ import annotations

import click

from rtdetr_export.artifact import PrecisionOptions
from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import (GraphRequest, ModelChoice, OutputFlags, SizeRequest, model_choice,
                                       onnx_graph_options, onnx_precision_options, output_flags, size_request)
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx, export_split


@click.command("onnx")
@model_choice
@onnx_graph_options
@size_request
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check parity on ONNX Runtime.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of real images for verification (default: the part of --calib-images calibration did not "
                   "read, else synthetic scenes).")
@onnx_precision_options
@click.option("--split", is_flag=True, default=False,
              help="Write two graphs with query selection on the host between them (no TopK/GatherElements, for "
                   "ncnn and NPUs): OUTPUT's stem .encoder.onnx and .decoder.onnx, and one .json sidecar.")
@output_flags("OUTPUT and its .json sidecar")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
def onnx_command(model: ModelChoice, graph: GraphRequest, sizes: SizeRequest, verify: bool, images: str | None,
                 precision: PrecisionOptions, split: bool, out: OutputFlags, output: str) -> None:
    """Export the model to ONNX and prove the file computes what PyTorch computes."""
    precision.validate()  # before the model loads: a bad flag combination fails at once
    loaded = model.load(out.quiet or out.as_json, sizes.model_size(model.image_size))
    options = OnnxExportOptions(**vars(graph.for_model(loaded, sizes.range_for(loaded))), verify=verify,
                                images=images, precision=precision)
    export = export_split if split else export_onnx
    result = export(loaded, output, options, force=out.force, log=progress(out.quiet, out.as_json))
    written = f"{result.encoder}, {result.decoder}" if split else str(result.path)
    if out.as_json:
        emit_json(result.record)
    elif not out.quiet:
        click.echo(f"wrote {written} ({'verified' if result.verification else 'NOT verified'}) and {result.sidecar}")
