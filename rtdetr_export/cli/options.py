"""Options that several commands share, defined once; choice lists come from the package's own constants."""

from __future__ import annotations

from typing import Callable

import click

from rtdetr_export.backends.openvino_runner import PRECISION_HINTS
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import METHODS, PRESETS, SizeRange, parse_image_size
from rtdetr_export.model.deformable_attention import BILINEAR_OPS
from rtdetr_export.model.heads import HEADS
from rtdetr_export.precision import INT8_FLOATS, PRECISIONS, PrecisionOptions
from rtdetr_export.precision.calibration import DEFAULT_COUNT
from rtdetr_export.precision.int8 import CALIBRATION_METHODS


class ImageSize(click.ParamType):
    """640 (square) or HxW (736x1280) -> (height, width); a bad size is one line naming the rule."""

    name = "N|HxW"

    def convert(self, value, param, ctx):
        try:
            return parse_image_size(value)
        except RTDetrExportError as exc:
            self.fail(str(exc), param, ctx)


IMAGE_SIZE = ImageSize()


def _apply(func: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        func = option(func)
    return func


def model_options(func: Callable) -> Callable:
    """--model / --preset / --method / --image-size, the options that pick the reference model."""
    return _apply(func, [
        click.option("--model", "model_path", type=click.Path(path_type=str), default=None,
                     help="A transformers model folder, an original RT-DETR .pth checkpoint (v1 or v2) or a "
                          "Hub model id ORG/NAME[@REVISION]."),
        click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
                     help="Architecture preset; with no --model, random weights of this size."),
        click.option("--method", type=click.Choice(METHODS), default=None,
                     help="Deformable-attention sampler: default (grid_sample) or discrete (gather)."),
        click.option("--image-size", type=IMAGE_SIZE, default=None,
                     help="Input size the model is built for: 640 (square) or HxW, e.g. 736x1280 (multiples of 32; "
                          "default: the model's own, 640). With a dynamic-size artifact (predict, bench): the size "
                          "to run it at, within its range (default: its opt size)."),
    ])


def size_range_options(func: Callable) -> Callable:
    """--dynamic-size / --min-size / --opt-size / --max-size: an export whose height and width are graph dimensions."""
    return _apply(func, [
        click.option("--dynamic-size", is_flag=True,
                     help="Make height and width graph dimensions (anchors and position embeddings computed in the "
                          "graph); needs --min-size and --max-size, verified at min, opt and max."),
        click.option("--min-size", type=IMAGE_SIZE, default=None, help="Smallest input of the size range (N or HxW)."),
        click.option("--opt-size", type=IMAGE_SIZE, default=None,
                     help="The size the file is built, verified and tuned for and runs at by default "
                          "(default: --image-size, else the model's own)."),
        click.option("--max-size", type=IMAGE_SIZE, default=None, help="Largest input of the size range (N or HxW)."),
    ])


def dynamic_size_request(dynamic_size: bool, image_size, min_size, opt_size, max_size):
    """Check the size flags before any work; returns the size to build the model at (None: its own)."""
    if not dynamic_size:
        if min_size or opt_size or max_size:
            raise RTDetrExportError("--min-size, --opt-size and --max-size describe a --dynamic-size export; "
                                    "add --dynamic-size")
        return image_size
    if min_size is None or max_size is None:
        raise RTDetrExportError("--dynamic-size needs --min-size and --max-size (e.g. --min-size 320 --max-size 1280)")
    if opt_size and image_size and opt_size != image_size:
        raise RTDetrExportError("--opt-size and --image-size both name the size the model is built for; give one")
    opt = opt_size or image_size
    SizeRange(min_size, opt or min_size, max_size)  # a reversed range fails here, before the model loads
    return opt


def size_range_for(dynamic_size: bool, min_size, max_size, model) -> SizeRange | None:
    """The export's size range once the model is built (its size is the opt)."""
    return SizeRange(min_size, tuple(model.config.image_size), max_size) if dynamic_size else None


def bilinear_op_option(default: str) -> Callable:
    """--bilinear-op: how the ``default`` sampler is written in the graph (the same math either way)."""
    return click.option(
        "--bilinear-op", type=click.Choice(list(BILINEAR_OPS)), default=default, show_default=True,
        help="How --method default's bilinear sampling is written: gather (Gather + arithmetic, no GridSample, "
             "opset 13+) or gridsample (the GridSample op, opset 16+). Same numbers; discrete ignores it.")


def head_options(func: Callable) -> Callable:
    """--head / --top-k: the output contract of an export."""
    return _apply(func, [
        click.option("--head", type=click.Choice(HEADS), default="raw", show_default=True,
                     help="raw: logits + pred_boxes; detections: labels, boxes (px), scores with orig_target_sizes."),
        click.option("--top-k", type=int, default=300, show_default=True,
                     help="Detections kept by the detections head."),
    ])


def calibration_options(func: Callable) -> Callable:
    """--calib-images / --calib-count / --calib-method / --int8-exclude / --keep-fp32 (onnx and trt)."""
    return _apply(func, [
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
                     help="Keep nodes matching this shell pattern in FP32 (FP16, INT8+FP16; repeatable)."),
        click.option("--int8-float", type=click.Choice(INT8_FLOATS), default="fp16", show_default=True,
                     help="INT8: what the unquantized layers run in (fp16: the FP16 policy around the Q/DQ "
                          "layers, for TensorRT speed; fp32: all of them FP32)."),
    ])


def precision_from_flags(target: str, calib_images, calib_count, calib_method, int8_exclude,
                         int8_default_exclusions, keep_fp32, int8_target: str = "tensorrt",
                         int8_float: str = "fp16") -> PrecisionOptions:
    """The PrecisionOptions for the flags of ``calibration_options``."""
    return PrecisionOptions(target, calib_images, calib_count, calib_method, tuple(int8_exclude),
                            int8_default_exclusions, tuple(keep_fp32), int8_target, int8_float)


def output_options(what: str) -> Callable:
    """--force / --quiet / --json, worded for the command's output ``what``."""
    def decorate(func: Callable) -> Callable:
        return _apply(func, [
            click.option("--force", is_flag=True, help=f"Overwrite {what}."),
            click.option("--quiet", is_flag=True, help="No progress lines."),
            click.option("--json", "as_json", is_flag=True, help="Print the machine-readable result as JSON."),
        ])
    return decorate


def report_options(files: str) -> Callable:
    """--report DIR plus --force / --quiet / --json, for the commands that write a report folder (bench, eval,
    serve-bench); ``files`` names what lands in the folder."""
    def decorate(func: Callable) -> Callable:
        func = output_options("a report already in --report")(func)
        return click.option("--report", "report_dir", type=click.Path(path_type=str), default=None,
                            help=f"Write {files} into this folder.")(func)
    return decorate


def openvino_option(func: Callable) -> Callable:
    """--openvino HINT: run the ONNX file on OpenVINO CPU under this recorded precision hint (verify, predict).
    bench and eval take a comma-separated list under the same name, one row per hint."""
    return click.option("--openvino", "openvino_hint", type=click.Choice(list(PRECISION_HINTS)), default=None,
                        help="Run the ONNX file on OpenVINO CPU instead of ONNX Runtime, under this inference "
                             "precision hint (recorded); bf16 is judged by agreement (needs pip install openvino).")(func)


PRECISION_CHOICE = click.Choice(list(PRECISIONS))
