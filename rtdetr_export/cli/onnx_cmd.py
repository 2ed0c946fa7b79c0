"""``rtdetr-export onnx``: export, simplify, check and verify an ONNX file."""

from __future__ import annotations

import click

from rtdetr_export.cli.common import build_model, emit_json, log, model_options
from rtdetr_export.export.heads import HEADS
from rtdetr_export.export.onnx_export import DEFAULT_OPSET, OnnxExportOptions, export_onnx
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.precision.calibration import DEFAULT_COUNT
from rtdetr_export.precision.int8 import CALIBRATION_METHODS


def calibration_options(func):
    """--calib-images / --calib-count / --calib-method / --int8-exclude / --keep-fp32 (onnx and trt)."""
    options = [
        click.option("--calib-images", type=click.Path(path_type=str), default=None,
                     help="Folder of real images for calibration (default: synthetic scenes, with a notice)."),
        click.option("--calib-count", type=int, default=DEFAULT_COUNT, show_default=True,
                     help="Calibration images used (fewer if the folder has fewer)."),
        click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), default="minmax",
                     show_default=True, help="INT8 activation range estimate."),
        click.option("--int8-exclude", multiple=True, metavar="PATTERN",
                     help="Keep nodes matching this shell pattern in float (INT8; repeatable)."),
        click.option("--int8-default-exclusions/--no-int8-default-exclusions", default=True, show_default=True,
                     help="Keep score/box heads, query selection and attention-weight paths in float."),
        click.option("--keep-fp32", multiple=True, metavar="PATTERN",
                     help="Keep nodes matching this shell pattern in FP32 (FP16; repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def precision_options(target: str, calib_images, calib_count, calib_method, int8_exclude,
                      int8_default_exclusions, keep_fp32) -> PrecisionOptions:
    """The PrecisionOptions for the flags of ``calibration_options``."""
    return PrecisionOptions(target, calib_images, calib_count, calib_method, tuple(int8_exclude),
                            int8_default_exclusions, tuple(keep_fp32))


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
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="fp16: mixed precision, sensitive parts FP32; int8: explicit Q/DQ (docs/precision.md).")
@calibration_options
@click.option("--force", is_flag=True, help="Overwrite OUTPUT and its .json sidecar.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the provenance record as JSON.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
def onnx_command(model_path, preset, method, image_size, opset, batch, dynamic_batch, head, top_k, simplify,
                 verify, images, precision, calib_images, calib_count, calib_method, int8_exclude,
                 int8_default_exclusions, keep_fp32, force, quiet, as_json, output) -> None:
    """Export the model to ONNX and prove the file computes what PyTorch computes."""
    progress = (lambda message: None) if quiet or as_json else log
    target = precision_options(precision, calib_images, calib_count, calib_method, int8_exclude,
                               int8_default_exclusions, keep_fp32)
    options = OnnxExportOptions(opset=opset, batch=batch, dynamic_batch=dynamic_batch, head=head, top_k=top_k,
                                simplify=simplify, verify=verify, images=images, precision=target)
    target.validate()  # before the model loads: a bad flag combination fails at once
    model = build_model(model_path, preset, method, image_size, quiet=quiet or as_json)
    result = export_onnx(model, output, options, force=force, log=progress)
    if as_json:
        emit_json(result.provenance)
    elif not quiet:
        verification = result.provenance["verification"]
        status = "verified" if verification else "NOT verified"
        click.echo(f"wrote {result.path} ({status}) and {result.sidecar}")
