"""``rtdetr-export trt``: precision ONNX (made and verified here, or given), then a verified, timed engine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rtdetr_export.artifact import sidecar_path
from rtdetr_export.backends.tensorrt.builder import BuildOptions
from rtdetr_export.cli.common import build_model, emit_json, progress
from rtdetr_export.cli.options import bilinear_op_option, calibration_options, dynamic_size_request, head_options, \
    model_options, output_options, precision_from_flags, size_range_for, size_range_options
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.torch_export import DEFAULT_BILINEAR_OP, DEFAULT_OPSET
from rtdetr_export.pipeline.engine import EngineJob, fp16_or_int8, run_engine_job


@click.command("trt")
@click.option("--onnx", "onnx_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Build from this ONNX file of ours (its precision; --model names its checkpoint).")
@model_options
@bilinear_op_option(DEFAULT_BILINEAR_OP)
@head_options
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset of the export.")
@click.option("--fp16", is_flag=True, help="FP16 mixed precision (sensitive parts FP32).")
@click.option("--int8", is_flag=True, help="INT8 Q/DQ from calibration images (--calib-images).")
@calibration_options
@click.option("--min-batch", type=int, default=1, show_default=True, help="Smallest batch of the profile.")
@click.option("--opt-batch", type=int, default=None, help="Batch TensorRT tunes for (default: --min-batch).")
@click.option("--max-batch", type=int, default=None, help="Largest batch of the profile (default: --opt-batch).")
@size_range_options
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
@output_options("existing outputs")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .engine file to write.")
def trt_command(onnx_file, model_path, preset, method, image_size, bilinear_op, head, top_k, opset, fp16, int8,
                calib_images, calib_count, calib_method, int8_exclude, int8_default_exclusions, keep_fp32, int8_float,
                min_batch, opt_batch, max_batch, dynamic_size, min_size, opt_size, max_size, workspace, timing_cache,
                builder_opt_level, cuda_graph, warmup, iterations, images, onnx_only, force, quiet, as_json, output) -> None:
    """Build a TensorRT 10/11 engine (strongly typed; precision from the ONNX graph), verify it, time it.

    A dynamic-size ONNX file's range (--onnx) becomes the profile's heights and widths; --min-size/--opt-size/
    --max-size narrow it. Without --onnx, --dynamic-size exports such a file first over the range given."""
    target = fp16_or_int8(fp16, int8)
    if onnx_file is not None and dynamic_size:
        raise RTDetrExportError("--dynamic-size shapes the export; with --onnx the file's own range is the profile's "
                                "(narrow it with --min-size/--opt-size/--max-size)")
    if onnx_file is None:
        image_size = dynamic_size_request(dynamic_size, image_size, min_size, opt_size, max_size)
    opt_batch = opt_batch or min_batch
    job = EngineJob(
        output=output, onnx=onnx_file, head=head, top_k=top_k, opset=opset, bilinear_op=bilinear_op, images=images,
        cuda_graph=cuda_graph,
        precision=precision_from_flags(target or "fp32", calib_images, calib_count, calib_method, int8_exclude,
                                       int8_default_exclusions, keep_fp32, int8_float=int8_float),
        precision_asked=target is not None,
        build=BuildOptions(min_batch, opt_batch, max_batch or opt_batch, workspace, timing_cache, builder_opt_level),
        warmup=warmup, iterations=iterations, onnx_only=onnx_only, force=force,
        profile_sizes=(min_size, opt_size, max_size) if onnx_file else (None, None, None))
    job.validate(model_chosen=bool(preset or method or image_size))

    def load():
        model = build_model(model_path, preset, method, image_size, quiet or as_json)
        job.build.size_range = size_range_for(dynamic_size, min_size, max_size, model)
        return model

    result = run_engine_job(job, load, model_path, progress(quiet, as_json))
    if isinstance(result, Path):  # --onnx-only: the verified precision ONNX, no engine
        if as_json:
            emit_json(json.loads(sidecar_path(result).read_text()))
        elif not quiet:
            click.echo(f"wrote {result} (verified) and {sidecar_path(result)}; engine not built (--onnx-only)")
    elif as_json:
        emit_json(result.record)
    elif not quiet:
        lat = result.record["latency"]
        click.echo(f"wrote {result.path} ({result.record['precision']}, verified) and {result.sidecar}")
        click.echo(f"latency at batch {lat['batch']}: p50 {lat['p50_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, "
                   f"p99 {lat['p99_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ms ({lat['images_per_s']:.1f} images/s)")
