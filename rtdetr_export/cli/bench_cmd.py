"""``rtdetr-export bench``: latency, throughput, memory and parity of every backend, as a report folder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from rtdetr_export.bench.targets import BACKENDS, DEVICES
from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import (SETTLE_MS_OPTION, ModelChoice, ReportFlags, model_choice, option_group,
                                       report_flags)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.heads import HEADS


def _bench(backends: str, openvino_hints: str, device: str, batch_text: str, warmup: int, iters: int | None,
           seconds: float | None, e2e_iters: int | None, threads: int | None, images: str | None, head: str,
           peer: bool, note: str | None, settle_ms: float) -> Any:
    """BenchOptions of the timing flags (the artifacts and the model are filled in by the command)."""
    from rtdetr_export.bench import BenchOptions, parse_backends, parse_batches

    if iters is not None and seconds is not None:
        raise RTDetrExportError("give --iters or --seconds, not both")
    return BenchOptions(backends=parse_backends(backends), device=device, batches=parse_batches(batch_text),
                        warmup=warmup, iters=10 if iters is None and seconds is None else iters, seconds=seconds,
                        e2e_iters=e2e_iters, threads=threads, images=images, head=head, peer=peer, note=note,
                        settle_ms=settle_ms,
                        openvino=[hint.strip() for hint in openvino_hints.split(",") if hint.strip()])


bench_options = option_group("bench", _bench, [
    click.option("--backends", default="torch,onnxruntime,tensorrt", show_default=True,
                 help=f"Comma-separated: {', '.join(BACKENDS)} ('torch' on CUDA adds its FP16 and compiled "
                      "variants). Unavailable ones are reported as skipped."),
    click.option("--openvino", "openvino_hints", default="f32,bf16", show_default=True, metavar="HINTS",
                 help="Precision hints of the openvino backend's rows, comma-separated (one row per ONNX file and "
                      "hint)."),
    click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True),
    click.option("--batch", "batch_text", default="1", show_default=True, help="Comma-separated batch sizes, e.g. 1,4."),
    click.option("--warmup", type=int, default=2, show_default=True, help="Untimed runs per backend and batch."),
    click.option("--iters", type=int, default=None, help="Timed interleaved rounds per batch [default: 10]."),
    click.option("--seconds", type=float, default=None,
                 help="Instead of --iters: rounds until every backend has this many seconds of samples."),
    click.option("--e2e-iters", type=int, default=None,
                 help="End-to-end rounds per batch (default: a third of the timed rounds, at least 2; 0: none)."),
    click.option("--threads", type=int, default=None,
                 help="CPU threads for PyTorch and ONNX Runtime (default: theirs)."),
    click.option("--images", type=click.Path(path_type=str), default=None,
                 help="Folder of images for the end-to-end runs (default: synthetic 1280x720 JPEGs)."),
    click.option("--head", type=click.Choice(HEADS), default="raw", show_default=True,
                 help="Head of the ONNX file bench exports when no ARTIFACT is given."),
    click.option("--peer", is_flag=True,
                 help="Add the transformers path (RTDetrV2ForObjectDetection -> torch.onnx -> onnxslim) on the same "
                      "weights; needs transformers."),
    click.option("--note", default=None, help="A line shown at the top of the report (e.g. 'draft, noisy machine')."),
    SETTLE_MS_OPTION,
])


@click.command("bench")
@click.argument("artifacts", nargs=-1, type=click.Path(path_type=str))
@model_choice
@bench_options
@report_flags("report.json, report.md, report.csv and latency.png")
def bench_command(artifacts: tuple[str, ...], model: ModelChoice, bench: Any, report: ReportFlags) -> None:
    """Benchmark ARTIFACTs (ONNX files, TensorRT engines) against PyTorch; with none, export the model first."""
    from rtdetr_export.bench import run_benchmark, write_report
    from rtdetr_export.bench.markdown import bench_markdown

    options = replace(bench, artifacts=list(artifacts), model_path=model.model_path, preset=model.preset,
                      method=model.method, image_size=model.image_size)
    if report.report_dir:
        from rtdetr_export.files import check_report_folder

        check_report_folder(report.report_dir, report.force)
    log = progress(report.quiet)
    result = run_benchmark(options, log)
    if report.report_dir:
        written = write_report(result, report.report_dir, force=report.force)
        log(f"[bench] wrote {', '.join(str(p) for p in written)}")
    if report.as_json:
        emit_json(result)
    elif not report.quiet:
        click.echo(bench_markdown(result), nl=False)
