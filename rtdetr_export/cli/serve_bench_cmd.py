"""``rtdetr-export serve-bench``: N concurrent clients against models on a Triton server, as a report folder."""

from __future__ import annotations

import sys

import click

from rtdetr_export.cli.common import emit_json, log, progress
from rtdetr_export.cli.options import report_options
from rtdetr_export.errors import RTDetrExportError


@click.command("serve-bench")
@click.argument("url")
@click.option("--model", "models", multiple=True, required=True, metavar="NAME",
              help="A served model (NAME or NAME_ensemble); repeat to load-test several, one after the other.")
@click.option("--clients", type=int, default=16, show_default=True, help="Concurrent clients.")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="How long each model is driven.")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True,
              help="Seconds one request may take before it counts as failed.")
@click.option("--images", type=click.Path(path_type=str), default=None,
              help="Folder of images the clients cycle through (default: the test photos in tests/data/images).")
@click.option("--note", default=None, help="A line shown at the top of the report.")
@report_options("report.json, report.md and report.csv")
def serve_bench_command(url, models, clients, seconds, timeout_s, images, note, report_dir, force, as_json,
                        quiet) -> None:
    """Load-test MODELs served by Triton at URL (http://host:8000 or grpc://host:8001); exit 1 on any failure."""
    from rtdetr_export.backends.triton_runner import parse_url
    from rtdetr_export.files import check_report_folder
    from rtdetr_export.imaging import list_images, load_image
    from rtdetr_export.serving.load import load_markdown, run_load, serve_report, write_serve_report

    if clients < 1 or seconds <= 0 or timeout_s <= 0:
        raise RTDetrExportError("--clients must be >= 1, --seconds and --timeout > 0")
    if report_dir:
        check_report_folder(report_dir, force)
    if images is None:
        from pathlib import Path

        images = Path(__file__).resolve().parents[2] / "tests" / "data" / "images"
    pictures = [load_image(p) for p in list_images(images)]
    say = progress(quiet, as_json)
    results = []
    for model in models:
        say(f"[serve-bench] {model}: {clients} clients for {seconds:g} s")
        result = run_load(url, model, pictures, clients, seconds, timeout_s)
        say(f"[serve-bench] {model}: {result.requests} ok, {result.failed} failed, {result.throughput_rps:.2f} req/s")
        results.append(result)
        if result.aborted:
            break
    settings = {"url": url, "protocol": parse_url(url)[0], "clients": clients, "seconds": seconds,
                "timeout_s": timeout_s, "images": str(images), "models": list(models)}
    report = serve_report(results, settings, note)
    if report_dir:
        written = write_serve_report(report, report_dir, force)
        say(f"[serve-bench] wrote {', '.join(str(p) for p in written)}")
    if as_json:
        emit_json(report)
    elif not quiet:
        click.echo(load_markdown(report), nl=False)
    aborted = next((r.aborted for r in results if r.aborted), None)
    if aborted:
        raise RTDetrExportError(aborted)
    if any(r.failed for r in results):
        log(f"error: {sum(r.failed for r in results)} request(s) failed")
        sys.exit(1)
