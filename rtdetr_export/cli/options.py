"""Options that several commands share, defined once; choice lists come from the package's own constants.

Options that belong together arrive in a command as one object (``option_group``): the API's own dataclasses
where one exists (``GraphOptions``, ``PrecisionOptions``, ``BuildOptions``, ``TimingOptions``), or a small request
here that turns into them once the model is known (``ModelChoice``, ``SizeRequest``, ``GraphRequest``,
``OutputFlags``). A command function then takes a handful of parameters, and ``--help`` still lists every option
with its default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable

import click

from rtdetr_export.artifact.options import (CALIBRATION_METHODS, DEFAULT_CALIBRATION_COUNT, DEFAULT_OPSET,
                                            INT8_FLOATS, INT8_TARGETS, PRECISIONS, GraphOptions, PrecisionOptions)
from rtdetr_export.backends.openvino_runner import PRECISION_HINTS
from rtdetr_export.bench.timing import Rounds
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import METHODS, PRESETS, SizeRange, parse_image_size
from rtdetr_export.model.deimv2_config import DEIMV2_PRESETS
from rtdetr_export.model.dfine_config import DFINE_PRESETS
from rtdetr_export.model.heads import HEADS
from rtdetr_export.model.sampler import BILINEAR_OPS, EXPORT_BILINEAR_OP, Sampler

DEFAULT_COUNT = DEFAULT_CALIBRATION_COUNT


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


def option_group(name: str, build: Callable[..., Any], options: list[Callable]) -> Callable:
    """Add ``options`` to a command and hand it their values as one argument ``name`` = ``build(**values)``."""
    def collect() -> None:
        """Stands in for the command while the options attach themselves (to learn their parameter names)."""

    params = _apply(collect, options).__click_params__
    names = [param.name for param in params]

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[name] = build(**{key: kwargs.pop(key) for key in names})
            return func(*args, **kwargs)

        command.__click_params__ = list(getattr(func, "__click_params__", [])) + list(params)
        return command
    return decorate


@dataclass(frozen=True)
class ModelChoice:
    """--model / --preset / --method / --image-size: which reference model to load, at what size."""

    model_path: str | None = None
    preset: str | None = None
    method: str | None = None
    image_size: tuple[int, int] | None = None

    @property
    def chosen(self) -> bool:
        """Whether an architecture option (not only --model) was given."""
        return bool(self.preset or self.method or self.image_size)

    def load(self, quiet: bool = False, image_size: tuple[int, int] | None = None) -> Any:
        """The reference model (``image_size``: in place of --image-size, e.g. a size range's opt)."""
        from rtdetr_export.cli.common import build_model

        return build_model(self.model_path, self.preset, self.method, image_size or self.image_size, quiet)


@dataclass(frozen=True)
class SizeRequest:
    """--dynamic-size / --min-size / --opt-size / --max-size."""

    dynamic_size: bool = False
    min_size: tuple[int, int] | None = None
    opt_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None

    @property
    def profile_sizes(self) -> tuple[Any, Any, Any]:
        return self.min_size, self.opt_size, self.max_size

    def model_size(self, image_size: tuple[int, int] | None) -> tuple[int, int] | None:
        """Check the flags before any work; the size to build the model at (None: its own)."""
        return dynamic_size_request(self.dynamic_size, image_size, self.min_size, self.opt_size, self.max_size)

    def range_for(self, model: Any) -> SizeRange | None:
        """The export's size range once the model is built (its size is the opt)."""
        return size_range_for(self.dynamic_size, self.min_size, self.max_size, model)


@dataclass(frozen=True)
class GraphRequest:
    """The graph flags: GraphOptions whose sampler is parsed from --method/--bilinear-op once the model (and so its
    method) is known."""

    options: GraphOptions
    bilinear_op: str = EXPORT_BILINEAR_OP

    def for_model(self, model: Any, size_range: SizeRange | None = None) -> GraphOptions:
        """The GraphOptions for ``model``: its sampler parsed once, here, from the model's method and
        --bilinear-op."""
        sampler = Sampler.parse(model.config.decoder_method, self.bilinear_op)
        return replace(self.options, sampler=sampler, size_range=size_range)


@dataclass(frozen=True)
class OutputFlags:
    """--force / --quiet / --json."""

    force: bool = False
    quiet: bool = False
    as_json: bool = False


def model_options(func: Callable) -> Callable:
    """--model / --preset / --method / --image-size, the options that pick the reference model."""
    return _apply(func, MODEL_OPTIONS)


MODEL_OPTIONS = [
        click.option("--model", "model_path", type=click.Path(path_type=str), default=None,
                     help="A transformers model folder, an original RT-DETR (v1 or v2), D-FINE or DEIM .pth checkpoint "
                          "or a Hub model id ORG/NAME[@REVISION]."),
        click.option("--preset", type=click.Choice(list(PRESETS) + list(DFINE_PRESETS) + list(DEIMV2_PRESETS)),
                     default=None,
                     help="Architecture preset (RT-DETR r18vd..r101vd; D-FINE dfine_n..dfine_x; DEIM-D-FINE "
                          "deim_dfine_n..deim_dfine_x; DEIMv2 deimv2_atto, deimv2_femto, deimv2_pico, deimv2_n); "
                          "with no --model, random weights of this size."),
        click.option("--method", type=click.Choice(METHODS), default=None,
                     help="Deformable-attention sampling: default (bilinear, as trained; --bilinear-op says how the "
                          "graph writes it) or discrete (the nearest cell, read with gathers)."),
        click.option("--image-size", type=IMAGE_SIZE, default=None,
                     help="Input size the model is built for: 640 (square) or HxW, e.g. 736x1280 (multiples of 32; "
                          "default: the model's own, 640). With a dynamic-size artifact (predict, bench): the size "
                          "to run it at, within its range (default: its opt size)."),
]
model_choice = option_group("model", ModelChoice, MODEL_OPTIONS)


SIZE_RANGE_OPTIONS = [
        click.option("--dynamic-size", is_flag=True,
                     help="Make height and width graph dimensions (anchors and position embeddings computed in the "
                          "graph); needs --min-size and --max-size, verified at min, opt and max."),
        click.option("--min-size", type=IMAGE_SIZE, default=None, help="Smallest input of the size range (N or HxW)."),
        click.option("--opt-size", type=IMAGE_SIZE, default=None,
                     help="The size the file is built, verified and tuned for and runs at by default "
                          "(default: --image-size, else the model's own)."),
        click.option("--max-size", type=IMAGE_SIZE, default=None, help="Largest input of the size range (N or HxW)."),
]
# --dynamic-size / --min-size / --opt-size / --max-size: an export whose height and width are graph dimensions.
size_request = option_group("sizes", SizeRequest, SIZE_RANGE_OPTIONS)


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


BILINEAR_OP_OPTION = click.option(
    "--bilinear-op", type=click.Choice(list(BILINEAR_OPS)), default=EXPORT_BILINEAR_OP, show_default=True,
    help="How --method default's bilinear sampling is written: gather (Gather + arithmetic, no GridSample, "
         "opset 13+) or gridsample (the GridSample op, opset 16+). Same numbers; discrete ignores it.")
HEAD_OPTIONS = [
    click.option("--head", type=click.Choice(HEADS), default="raw", show_default=True,
                 help="raw: logits + pred_boxes; detections: labels, boxes (px), scores with orig_target_sizes."),
    click.option("--top-k", type=int, default=300, show_default=True, help="Detections kept by the detections head."),
]
# bench's and select's pause between timed calls (bench/timing.py Rounds.settle_ms)
SETTLE_MS_OPTION = click.option(
    "--settle-ms", type=float, default=Rounds.settle_ms, show_default=True,
    help="Pause before each timed call while several runners take turns, so the last runtime's spinning threads "
         "settle (docs/benchmarks.md); 0 where the timing is not the point.")
OPSET_OPTION = click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
                            help="ONNX opset (13-20; 16+ with --bilinear-op gridsample).")


def head_options(func: Callable) -> Callable:
    """--head / --top-k: the output contract of an export."""
    return _apply(func, HEAD_OPTIONS)


def _onnx_graph(bilinear_op: str, opset: int, head: str, top_k: int, batch: int = 1, dynamic_batch: bool = False,
                simplify: bool = True) -> GraphRequest:
    return GraphRequest(GraphOptions(opset=opset, batch=batch, dynamic_batch=dynamic_batch, head=head, top_k=top_k,
                                     simplify=simplify), bilinear_op)


# The graph flags of `onnx`: sampler spelling, opset, batch, head, simplification.
onnx_graph_options = option_group("graph", _onnx_graph, [
    BILINEAR_OP_OPTION, OPSET_OPTION,
    click.option("--batch", type=int, default=1, show_default=True, help="Static batch size."),
    click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic (verified at 1 and 4)."),
    *HEAD_OPTIONS,
    click.option("--simplify/--no-simplify", default=True, show_default=True, help="Clean the graph with onnxslim."),
])
# The graph flags of `trt` (its batch comes from the build profile).
engine_graph_options = option_group("graph", _onnx_graph, [BILINEAR_OP_OPTION, *HEAD_OPTIONS, OPSET_OPTION])


CALIBRATION_OPTIONS = [
        click.option("--calib-images", type=click.Path(path_type=str), default=None,
                     help="Folder of real images: the first --calib-count by file name calibrate, the rest verify "
                          "(default: synthetic scenes, with a notice)."),
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
]


def precision_from_flags(target: str, calib_images, calib_count, calib_method, int8_exclude,
                         int8_default_exclusions, keep_fp32, int8_target: str = "tensorrt",
                         int8_float: str = "fp16") -> PrecisionOptions:
    """The PrecisionOptions for the flags of ``calibration_options``."""
    return PrecisionOptions(target, calib_images, calib_count, calib_method, tuple(int8_exclude),
                            int8_default_exclusions, tuple(keep_fp32), int8_target, int8_float)


def _output_option_list(what: str) -> list[Callable]:
    return [click.option("--force", is_flag=True, help=f"Overwrite {what}."),
            click.option("--quiet", is_flag=True, help="No progress lines."),
            click.option("--json", "as_json", is_flag=True, help="Print the machine-readable result as JSON.")]


def output_options(what: str) -> Callable:
    """--force / --quiet / --json, worded for the command's output ``what``."""
    def decorate(func: Callable) -> Callable:
        return _apply(func, _output_option_list(what))
    return decorate


def output_flags(what: str) -> Callable:
    """--force / --quiet / --json as one ``out`` argument (``OutputFlags``)."""
    return option_group("out", OutputFlags, _output_option_list(what))


def _precision(precision: str, int8_target: str, calib_images, calib_count, calib_method, int8_exclude,
               int8_default_exclusions, keep_fp32, int8_float) -> PrecisionOptions:
    return precision_from_flags(precision, calib_images, calib_count, calib_method, int8_exclude,
                                int8_default_exclusions, keep_fp32, int8_target, int8_float)


# --precision / --int8-target and the calibration flags of `onnx`, as PrecisionOptions.
onnx_precision_options = option_group("precision", _precision, [
    click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True,
                 help="fp16: mixed precision, sensitive parts FP32; int8: explicit Q/DQ (docs/precision.md)."),
    click.option("--int8-target", type=click.Choice(list(INT8_TARGETS)), default="tensorrt", show_default=True,
                 help="With --precision int8, the runtime the Q/DQ layout is for: tensorrt (Q/DQ on layer inputs) "
                      "or cpu (ONNX Runtime / OpenVINO integer kernels: uint8 activations, outputs quantized)."),
    *CALIBRATION_OPTIONS,
])


@dataclass(frozen=True)
class PrecisionChoice:
    """`trt`'s --fp16/--int8 and calibration flags: the options, and whether a precision was asked for (with
    --onnx the file must then have it)."""

    options: PrecisionOptions
    asked: bool


def _engine_precision(fp16: bool, int8: bool, calib_images, calib_count, calib_method, int8_exclude,
                      int8_default_exclusions, keep_fp32, int8_float) -> PrecisionChoice:
    if fp16 and int8:
        raise RTDetrExportError("--fp16 and --int8 are exclusive: --int8 already runs the layers it does not quantize "
                                "in FP16 (--int8-float fp32 for FP32; docs/precision.md, 'FP16 and INT8 together')")
    target = "fp16" if fp16 else "int8" if int8 else None
    return PrecisionChoice(precision_from_flags(target or "fp32", calib_images, calib_count, calib_method,
                                                int8_exclude, int8_default_exclusions, keep_fp32,
                                                int8_float=int8_float), target is not None)


engine_precision_options = option_group("precision", _engine_precision, [
    click.option("--fp16", is_flag=True, help="FP16 mixed precision (sensitive parts FP32)."),
    click.option("--int8", is_flag=True, help="INT8 Q/DQ from calibration images (--calib-images)."),
    *CALIBRATION_OPTIONS,
])


def report_options(files: str) -> Callable:
    """--report DIR plus --force / --quiet / --json, for the commands that write a report folder (bench, eval,
    serve-bench); ``files`` names what lands in the folder."""
    def decorate(func: Callable) -> Callable:
        func = output_options("a report already in --report")(func)
        return click.option("--report", "report_dir", type=click.Path(path_type=str), default=None,
                            help=f"Write {files} into this folder.")(func)
    return decorate


@dataclass(frozen=True)
class ReportFlags:
    """--report DIR / --force / --quiet / --json of the commands that write a report folder."""

    report_dir: str | None = None
    force: bool = False
    quiet: bool = False
    as_json: bool = False


def report_flags(files: str) -> Callable:
    """--report DIR plus --force / --quiet / --json as one ``report`` argument (``ReportFlags``)."""
    return option_group("report", ReportFlags, [
        click.option("--report", "report_dir", type=click.Path(path_type=str), default=None,
                     help=f"Write {files} into this folder."),
        *_output_option_list("a report already in --report")])


def openvino_option(func: Callable) -> Callable:
    """--openvino HINT: run the ONNX file on OpenVINO CPU under this recorded precision hint (verify, predict).
    bench and eval take a comma-separated list under the same name, one row per hint."""
    return click.option("--openvino", "openvino_hint", type=click.Choice(list(PRECISION_HINTS)), default=None,
                        help="Run the ONNX file on OpenVINO CPU instead of ONNX Runtime, under this inference "
                             "precision hint (recorded); bf16 is judged by agreement (needs pip install openvino).")(func)


def calibration_options(func: Callable) -> Callable:
    """--calib-images / --calib-count / --calib-method / --int8-exclude / --keep-fp32 (onnx and trt)."""
    return _apply(func, CALIBRATION_OPTIONS)


def size_range_options(func: Callable) -> Callable:
    """--dynamic-size / --min-size / --opt-size / --max-size, each its own parameter."""
    return _apply(func, SIZE_RANGE_OPTIONS)


PRECISION_CHOICE = click.Choice(list(PRECISIONS))
