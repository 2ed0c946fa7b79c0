"""``rtdetr-export trt``: precision ONNX (made and verified here, or given), then a verified, timed engine."""

from __future__ import annotations

from pathlib import Path

import click

from rtdetr_export.artifact import open_artifact
from rtdetr_export.backends.tensorrt.builder import BuildOptions
from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import (GraphRequest, ModelChoice, OutputFlags, PrecisionChoice, SizeRequest,
                                       engine_graph_options, engine_precision_options, model_choice, option_group,
                                       output_flags, size_request)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.pipeline.engine import EngineJob, TimingOptions, run_engine_job


def _build(min_batch: int, opt_batch: int | None, max_batch: int | None, workspace: int, timing_cache: str | None,
           builder_opt_level: int) -> BuildOptions:
    opt_batch = opt_batch or min_batch
    return BuildOptions(min_batch, opt_batch, max_batch or opt_batch, workspace, timing_cache, builder_opt_level)


build_options = option_group("build", _build, [
    click.option("--min-batch", type=int, default=1, show_default=True, help="Smallest batch of the profile."),
    click.option("--opt-batch", type=int, default=None, help="Batch TensorRT tunes for (default: --min-batch)."),
    click.option("--max-batch", type=int, default=None, help="Largest batch of the profile (default: --opt-batch)."),
    click.option("--workspace", type=int, default=4096, show_default=True, help="Builder workspace limit, MiB."),
    click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=str), default=None,
                 help="Load tactic timings from this file if it exists and save them back."),
    click.option("--builder-opt-level", type=int, default=3, show_default=True, help="0 (fast build) .. 5."),
])
timing_options = option_group("timing", lambda cuda_graph, warmup, iterations: TimingOptions(
    warmup, iterations, cuda_graph), [
    click.option("--cuda-graph", is_flag=True, help="Replay the enqueue as a CUDA graph when verifying and timing."),
    click.option("--warmup", type=int, default=50, show_default=True, help="Untimed runs before timing."),
    click.option("--iterations", type=int, default=200, show_default=True, help="Timed runs."),
])


@click.command("trt")
@click.option("--onnx", "onnx_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Build from this ONNX file of ours (its precision; --model names its checkpoint).")
@model_choice
@engine_graph_options
@engine_precision_options
@build_options
@size_request
@timing_options
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of real images for verification (default: the part of --calib-images calibration did not "
                   "read, else synthetic scenes).")
@click.option("--onnx-only", is_flag=True, help="Stop after the verified precision ONNX (no TensorRT needed).")
@output_flags("existing outputs")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .engine file to write.")
def trt_command(onnx_file: str | None, model: ModelChoice, graph: GraphRequest, precision: PrecisionChoice,
                build: BuildOptions, sizes: SizeRequest, timing: TimingOptions, images: str | None, onnx_only: bool,
                out: OutputFlags, output: str) -> None:
    """Build a TensorRT 10/11 engine (strongly typed; precision from the ONNX graph), verify it, time it.

    A dynamic-size ONNX file's range (--onnx) becomes the profile's heights and widths; --min-size/--opt-size/
    --max-size narrow it. Without --onnx, --dynamic-size exports such a file first over the range given."""
    if onnx_file is not None and sizes.dynamic_size:
        raise RTDetrExportError("--dynamic-size shapes the export; with --onnx the file's own range is the profile's "
                                "(narrow it with --min-size/--opt-size/--max-size)")
    image_size = model.image_size if onnx_file else sizes.model_size(model.image_size)
    job = EngineJob(output=output, onnx=onnx_file, precision=precision.options, precision_asked=precision.asked,
                    graph=graph.options, build=build, images=images, timing=timing, onnx_only=onnx_only,
                    force=out.force, profile_sizes=sizes.profile_sizes if onnx_file else (None, None, None))
    job.validate(model_chosen=model.chosen)

    def load():
        loaded = model.load(out.quiet or out.as_json, image_size)
        job.build.size_range = sizes.range_for(loaded)
        job.graph = graph.for_model(loaded)  # the sampler, parsed once the model's method is known
        return loaded

    result = run_engine_job(job, load, model.model_path, progress(out.quiet, out.as_json))
    if isinstance(result, Path):  # --onnx-only: the verified precision ONNX, no engine
        if out.as_json:
            emit_json(open_artifact(result))
        elif not out.quiet:
            click.echo(f"wrote {result} (verified) and {result.with_suffix('.json')}; engine not built (--onnx-only)")
    elif out.as_json:
        emit_json(result.record)
    elif not out.quiet:
        record, lat = result.record, result.record.latency
        click.echo(f"wrote {result.path} ({record.precision}, verified) and {result.sidecar}")
        click.echo(f"latency at batch {lat.batch}: p50 {lat.p50_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms, "
                   f"p99 {lat.p99_ms:.3f} ms, mean {lat.mean_ms:.3f} ms ({lat.images_per_s:.1f} images/s)")
