"""``rtdetr-export eval``: COCO accuracy of the PyTorch reference and every artifact, with their differences."""

from __future__ import annotations

import sys

import click

from rtdetr_export.cli.common import build_model, emit_json, log, progress
from rtdetr_export.cli.options import IMAGE_SIZE, report_options


@click.command("eval")
@click.argument("artifacts", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("--coco", "annotations", required=True, type=click.Path(path_type=str),
              help="COCO instances JSON (images, annotations, categories named like the model's classes).")
@click.option("--images", required=True, type=click.Path(path_type=str), help="Folder of the annotated images.")
@click.option("--model", "model_path", type=click.Path(path_type=str), default=None,
              help="The reference checkpoint (needed unless the artifacts carry random-weight provenance).")
@click.option("--batch", type=int, default=1, show_default=True, help="Images per inference call.")
@click.option("--limit", type=int, default=None, help="Evaluate on the first N annotated images only.")
@click.option("--image-size", type=IMAGE_SIZE, default=None,
              help="Input size (N or HxW) for dynamic-size artifacts, within their range (default: their opt size); "
                   "the reference runs at it too.")
@click.option("--openvino", "openvino_hints", default="", metavar="HINTS",
              help="Also run each ONNX artifact on OpenVINO CPU with these precision hints, e.g. f32,bf16 "
                   "(needs pip install openvino).")
@report_options("report.json, report.md, report.csv and pr_curves.png")
def eval_command(artifacts, annotations, images, model_path, batch, limit, image_size, openvino_hints, report_dir,
                 force, quiet, as_json) -> None:
    """COCO metrics (AP, AP50, AP75, AP S/M/L, AR@100, per class) of the reference and each ARTIFACT.

    Exits 1 when annotated images are missing from --images (they are skipped, listed and counted).
    """
    from rtdetr_export.eval import EvalOptions, evaluate, eval_markdown, write_eval_report
    from rtdetr_export.files import check_report_folder

    hints = tuple(hint.strip() for hint in openvino_hints.split(",") if hint.strip())
    options = EvalOptions(annotations, images, batch, limit, hints, image_size)
    options.validate()
    if report_dir:
        check_report_folder(report_dir, force)
    model = build_model(model_path, None, None, image_size, quiet or as_json) if model_path and not artifacts else None
    report = evaluate(list(artifacts), options, model, model_path, progress(quiet, as_json))
    if report_dir:
        written = write_eval_report(report, report_dir, force)
        progress(quiet, as_json)(f"[eval] wrote {', '.join(str(p) for p in written)}")
    if as_json:
        emit_json(report)
    elif not quiet:
        click.echo(eval_markdown(report), nl=False)
    if report.skipped:  # one line per image, however quiet: the numbers above are over fewer images than asked
        for path in report.skipped:
            log(f"error: {path}: image missing, skipped")
        log(f"error: {len(report.skipped)} annotated image(s) missing from {images}; they were skipped")
        sys.exit(1)
