"""``rtdetr-export select``: the fastest CPU artifact for this machine within an AP budget, written with its record."""

from __future__ import annotations

from typing import Any

import click

from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT
from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import (SETTLE_MS_OPTION, ModelChoice, ReportFlags, model_choice, option_group,
                                       report_flags)
from rtdetr_export.errors import RTDetrExportError


def _select(annotations: str, images: str, max_ap_drop: float, calib_images: str | None, calib_count: int,
            batch: int, iters: int, warmup: int, threads: int | None, limit: int | None, settle_ms: float) -> Any:
    from rtdetr_export.select import SelectOptions

    return SelectOptions(annotations, images, max_ap_drop, calib_images, calib_count, batch, iters, warmup, threads,
                         limit, settle_ms)


select_options = option_group("select", _select, [
    click.option("--coco", "annotations", required=True, type=click.Path(path_type=str),
                 help="COCO instances JSON the AP is measured on (categories named like the model's classes)."),
    click.option("--images", required=True, type=click.Path(path_type=str), help="Folder of the annotated images."),
    click.option("--max-ap-drop", type=float, default=0.005, show_default=True,
                 help="AP a candidate may lose against ONNX Runtime FP32 (0.005 = half a point); negative asks "
                      "for a gain."),
    click.option("--calib-images", type=click.Path(path_type=str), default=None,
                 help="Folder INT8 calibrates on (the first --calib-count by name; the rest verify) [default: "
                      "--images]."),
    click.option("--calib-count", type=int, default=DEFAULT_CALIBRATION_COUNT, show_default=True,
                 help="Calibration images used."),
    click.option("--batch", type=int, default=4, show_default=True,
                 help="The throughput batch, timed beside batch 1 (latency and the choice are batch 1's)."),
    click.option("--iters", type=int, default=10, show_default=True, help="Timed interleaved rounds per batch."),
    click.option("--warmup", type=int, default=2, show_default=True, help="Untimed runs per candidate and batch."),
    click.option("--threads", type=int, default=None,
                 help="Intra-op threads of every runtime [default: each runtime's own choice]."),
    click.option("--limit", type=int, default=None, help="Measure AP on the first N annotated images only."),
    SETTLE_MS_OPTION,
])


@click.command("select")
@model_choice
@select_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Where the chosen artifact goes (name ending .onnx or .xml): under this stem with its own "
                   "format's suffix, so -o best.onnx writes best.onnx + best.json when an ONNX file wins and best.xml "
                   "+ best.bin + best.xml.json when the OpenVINO IR wins (and says so); the sidecar is the "
                   "artifact's record plus the selection. Any of these files that exists needs --force.")
@report_flags("report.json, report.md, report.csv and latency_vs_ap.png")
def select_command(model: ModelChoice, select: Any, output: str | None, report: ReportFlags) -> None:
    """Pick the fastest CPU artifact within --max-ap-drop AP of ONNX Runtime FP32, measured on this machine.

    Makes the candidates (FP32 and --int8-target cpu ONNX files; each on ONNX Runtime, and on OpenVINO under the
    f32 and bf16 hints where openvino is installed; an NNCF INT8 OpenVINO IR of the FP32 file, rtdetr recipe, under
    the bf16 hint where the CPU has BF16 and f32 otherwise, where openvino and nncf are installed; a candidate whose
    package is missing is a skipped row with the reason), times them in one interleaved run at batch 1 and --batch,
    scores their AP on --coco/--images, marks the Pareto front and writes the fastest within the budget to
    --output. Exits 1, writing no artifact, when none is within it.
    """
    from rtdetr_export.files import check_report_folder
    from rtdetr_export.select import select_artifact, select_markdown, write_select_report
    from rtdetr_export.select.run import check_outputs

    log = progress(report.quiet, report.as_json)
    select.check_dataset()  # a bad annotation file or image folder fails before the model loads
    check_outputs(output, report.force, tuple(c.artifact.suffix for c in select.candidates))
    if report.report_dir:
        check_report_folder(report.report_dir, report.force)
    loaded = model.load(report.quiet or report.as_json)
    result = select_artifact(loaded, select, output, report.force, log)
    if report.report_dir:
        written = write_select_report(result, report.report_dir, report.force)
        log(f"[select] wrote {', '.join(str(p) for p in written)}")
    if report.as_json:
        emit_json(result)
    elif not report.quiet:
        click.echo(select_markdown(result), nl=False)
    if result.chosen is None:
        raise RTDetrExportError(result.refusal)
