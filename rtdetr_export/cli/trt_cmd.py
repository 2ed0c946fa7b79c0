"""``rtdetr-export trt``: precision ONNX (made and verified here, or given), then a verified, timed engine."""

from __future__ import annotations

from pathlib import Path

import click

from rtdetr_export.cli.common import build_model, emit_json, log, model_options
from rtdetr_export.cli.onnx_cmd import calibration_options, precision_options
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.export.heads import HEADS
from rtdetr_export.export.onnx_export import DEFAULT_OPSET, OnnxExportOptions
from rtdetr_export.precision.calibration import DEFAULT_COUNT


def _target(fp16: bool, int8: bool) -> str | None:
    if fp16 and int8:
        raise RTDetrExportError("--fp16 and --int8 are exclusive: --int8 keeps the layers it does not quantize in "
                                "FP32 (docs/precision.md, 'FP16 and INT8 together')")
    return "fp16" if fp16 else "int8" if int8 else None


@click.command("trt")
@click.option("--onnx", "onnx_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Build from this ONNX file of ours (its precision; --model names its checkpoint).")
@model_options
@click.option("--head", type=click.Choice(HEADS), default="raw", show_default=True, help="Output contract.")
@click.option("--top-k", type=int, default=300, show_default=True, help="Detections kept by the detections head.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset of the export.")
@click.option("--fp16", is_flag=True, help="FP16 mixed precision (sensitive parts FP32).")
@click.option("--int8", is_flag=True, help="INT8 Q/DQ from calibration images (--calib-images).")
@calibration_options
@click.option("--min-batch", type=int, default=1, show_default=True, help="Smallest batch of the profile.")
@click.option("--opt-batch", type=int, default=None, help="Batch TensorRT tunes for (default: --min-batch).")
@click.option("--max-batch", type=int, default=None, help="Largest batch of the profile (default: --opt-batch).")
@click.option("--workspace", type=int, default=4096, show_default=True, help="Builder workspace limit, MiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Load tactic timings from this file if it exists and save them back.")
@click.option("--builder-opt-level", type=int, default=3, show_default=True, help="0 (fast build) .. 5.")
@click.option("--cuda-graph", is_flag=True, help="Replay the enqueue as a CUDA graph when verifying and timing.")
@click.option("--warmup", type=int, default=50, show_default=True, help="Untimed runs before timing.")
@click.option("--iterations", type=int, default=200, show_default=True, help="Timed runs.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of real images for verification (default: synthetic scenes).")
@click.option("--onnx-only", is_flag=True, help="Stop after the verified precision ONNX (no TensorRT needed).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the engine record as JSON.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .engine file to write.")
def trt_command(onnx_file, model_path, preset, method, image_size, head, top_k, opset, fp16, int8, calib_images,
                calib_count, calib_method, int8_exclude, int8_default_exclusions, keep_fp32, min_batch, opt_batch,
                max_batch, workspace, timing_cache, builder_opt_level, cuda_graph, warmup, iterations, images,
                onnx_only, force, quiet, as_json, output) -> None:
    """Build a TensorRT 10/11 engine (strongly typed; precision from the ONNX graph), verify it, time it."""
    from rtdetr_export.backends.tensorrt.builder import BuildOptions, import_tensorrt
    from rtdetr_export.backends.tensorrt.engine import build_engine_artifact, check_engine_outputs

    progress = (lambda message: None) if quiet or as_json else log
    opt_batch = opt_batch or min_batch
    build = BuildOptions(min_batch, opt_batch, max_batch or opt_batch, workspace, timing_cache, builder_opt_level)
    build.validate()
    if warmup < 0 or iterations < 1:
        raise RTDetrExportError("--warmup must be >= 0 and --iterations >= 1")
    engine_path, _ = check_engine_outputs(output, force)
    target = _target(fp16, int8)

    if onnx_file is not None:
        if calib_images or int8_exclude or keep_fp32 or calib_method != "minmax" or calib_count != DEFAULT_COUNT \
                or not int8_default_exclusions:
            raise RTDetrExportError("calibration and exclusion flags shape the precision ONNX; with --onnx it is "
                                    "already made (use them with `rtdetr-export onnx`)")
        onnx_path, model = _given_onnx(onnx_file, target, model_path, preset, method, image_size, onnx_only, progress)
    else:
        precision = precision_options(target or "fp32", calib_images, calib_count, calib_method, int8_exclude,
                                      int8_default_exclusions, keep_fp32)
        precision.validate()
        onnx_path = engine_path.with_suffix(".onnx")
        model = build_model(model_path, preset, method, image_size, quiet=quiet or as_json)
        _export(model, onnx_path, precision, head, top_k, opset, build, images, force, progress)
        if onnx_only:
            _report_onnx(onnx_path, as_json, quiet)
            return
    try:
        import_tensorrt()
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"{exc}; the verified {onnx_path.name} is ready to build there") from None
    result = build_engine_artifact(onnx_path, engine_path, model, build, images, cuda_graph, warmup, iterations,
                                   force, progress)
    if as_json:
        emit_json(result.record)
    elif not quiet:
        lat = result.record["latency"]
        click.echo(f"wrote {result.path} ({result.record['precision']}, verified) and {result.sidecar}")
        click.echo(f"latency at batch {lat['batch']}: p50 {lat['p50_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, "
                   f"p99 {lat['p99_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ms ({lat['images_per_s']:.1f} images/s)")


def _export(model, onnx_path: Path, precision, head: str, top_k: int, opset: int, build, images, force: bool,
            progress) -> None:
    from rtdetr_export.export.onnx_export import export_onnx

    options = OnnxExportOptions(opset=opset, batch=build.min_batch, dynamic_batch=build.dynamic, head=head,
                                top_k=top_k, images=images, precision=precision)
    export_onnx(model, onnx_path, options, force=force, log=progress)


def _given_onnx(onnx_file: str, target: str | None, model_path, preset, method, image_size, onnx_only: bool,
                progress):
    from rtdetr_export.export.provenance import load_artifact_provenance
    from rtdetr_export.verify.artifact import reference_model

    if onnx_only:
        raise RTDetrExportError("--onnx-only makes the precision ONNX; with --onnx there is nothing to make")
    if preset or method or image_size:
        raise RTDetrExportError("with --onnx the model comes from the file's provenance: drop --preset, --method "
                                "and --image-size (--model names the checkpoint)")
    provenance = load_artifact_provenance(onnx_file)
    if target is not None and provenance["precision"] != target:
        raise RTDetrExportError(f"{onnx_file} is {provenance['precision']}, not {target}: make a {target} file "
                                f"with `rtdetr-export onnx --precision {target}`, or omit --onnx")
    return Path(onnx_file), reference_model(provenance, model_path, progress)


def _report_onnx(onnx_path: Path, as_json: bool, quiet: bool) -> None:
    import json

    from rtdetr_export.export.provenance import sidecar_path

    if as_json:
        emit_json(json.loads(sidecar_path(onnx_path).read_text()))
    elif not quiet:
        click.echo(f"wrote {onnx_path} (verified) and {sidecar_path(onnx_path)}; engine not built (--onnx-only)")
