"""``rtdetr-export verify``: check an exported file against the PyTorch reference."""

from __future__ import annotations

import sys

import click

from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import openvino_option
from rtdetr_export.pipeline import verify_artifact
from rtdetr_export.verify import Verification


def format_report(report: Verification) -> list[str]:
    """Human-readable lines: one per output per batch size (its judged metric, then the other numbers), then
    PASS/FAIL."""
    inputs = "synthetic inputs" if report.inputs.synthetic else f"on {report.inputs}"
    lines = [f"{report.candidate} vs {report.reference} ({report.precision}, {inputs})"]
    for run in report.runs:
        moved = f", {run.reordered_rows} rows re-paired" if run.reordered_rows else ""
        flipped = f", {run.flipped_rows} rows excused as rounding-boundary flips" if run.flipped_rows else ""
        lines.append(f"  batch {run.batch}{moved}{flipped}")
        for name, check in run.outputs.items():
            numbers = ", ".join([f"{check.metric} {check.value:.3g}"] + [
                f"{k} {v:.3g}" for k, v in check.stats.items() if isinstance(v, float) and k != check.metric])
            lines.append(f"    {name:<11} {numbers}  (threshold {check.threshold:g})  "
                         f"{'ok' if check.passed else 'FAIL'}")
    lines.append("PASS" if report.passed else "FAIL: " + "; ".join(report.failures))
    return lines


@click.command("verify")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="Checkpoint the artifact came from (not needed for random-weight presets).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of real images to compare on (default: the images that verified it when it was made, "
                   "while their folder is there; else synthetic scenes).")
@openvino_option
@click.option("--json", "as_json", is_flag=True, help="Print the verification report as JSON.")
@click.option("--quiet", is_flag=True, help="Only the verdict.")
def verify_command(artifact: str, model_path: str | None, images: str | None, openvino_hint: str | None,
                   as_json: bool, quiet: bool) -> None:
    """Compare ARTIFACT (an ONNX file we exported, or a split artifact: its .json or either graph) with the PyTorch
    reference; exit 1 if it fails."""
    report = verify_artifact(artifact, model_path, images, log=progress(quiet, as_json), openvino=openvino_hint)
    if as_json:
        emit_json(report)
    else:
        lines = format_report(report)
        for line in lines[-1:] if quiet else lines:
            click.echo(line)
    if not report.passed:
        sys.exit(1)
