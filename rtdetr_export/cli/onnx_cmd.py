"""``rtdetr-export onnx``: export, simplify, check and verify an ONNX file."""

from __future__ import annotations

import click

from rtdetr_export.cli.common import build_model, emit_json, progress
from rtdetr_export.cli.options import (PRECISION_CHOICE, bilinear_op_option, calibration_options,
                                       dynamic_size_request, head_options, model_options, output_options,
                                       precision_from_flags, size_range_for, size_range_options)
from rtdetr_export.export.torch_export import DEFAULT_BILINEAR_OP, DEFAULT_OPSET
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.precision import INT8_TARGETS


@click.command("onnx")
@model_options
@bilinear_op_option(DEFAULT_BILINEAR_OP)
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset (13-20; 16+ with --bilinear-op gridsample).")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic (verified at 1 and 4).")
@size_range_options
@head_options
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Clean the graph with onnxslim.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check parity on ONNX Runtime.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of real images for verification (default: synthetic scenes).")
@click.option("--precision", type=PRECISION_CHOICE, default="fp32", show_default=True,
              help="fp16: mixed precision, sensitive parts FP32; int8: explicit Q/DQ (docs/precision.md).")
@click.option("--int8-target", type=click.Choice(list(INT8_TARGETS)), default="tensorrt", show_default=True,
              help="With --precision int8, the runtime the Q/DQ layout is for: tensorrt (Q/DQ on layer inputs) or "
                   "cpu (ONNX Runtime / OpenVINO integer kernels: uint8 activations, outputs quantized).")
@calibration_options
@output_options("OUTPUT and its .json sidecar")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
def onnx_command(model_path, preset, method, image_size, bilinear_op, opset, batch, dynamic_batch, dynamic_size,
                 min_size, opt_size, max_size, head, top_k, simplify, verify, images, precision, int8_target, calib_images, calib_count, calib_method,
                 int8_exclude, int8_default_exclusions, keep_fp32, int8_float, force, quiet, as_json, output) -> None:
    """Export the model to ONNX and prove the file computes what PyTorch computes."""
    target = precision_from_flags(precision, calib_images, calib_count, calib_method, int8_exclude,
                                  int8_default_exclusions, keep_fp32, int8_target, int8_float)
    options = OnnxExportOptions(opset=opset, batch=batch, dynamic_batch=dynamic_batch, head=head, top_k=top_k,
                                simplify=simplify, verify=verify, images=images, precision=target,
                                bilinear_op=bilinear_op)
    target.validate()  # before the model loads: a bad flag combination fails at once
    image_size = dynamic_size_request(dynamic_size, image_size, min_size, opt_size, max_size)
    model = build_model(model_path, preset, method, image_size, quiet=quiet or as_json)
    options.size_range = size_range_for(dynamic_size, min_size, max_size, model)
    result = export_onnx(model, output, options, force=force, log=progress(quiet, as_json))
    if as_json:
        emit_json(result.provenance)
    elif not quiet:
        click.echo(f"wrote {result.path} ({'verified' if result.verification else 'NOT verified'}) and "
                   f"{result.sidecar}")
