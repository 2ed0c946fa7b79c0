"""``rtdetr-export triton``: a Triton Inference Server model repository serving one or more artifacts."""

from __future__ import annotations

import click

from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import OutputFlags, option_group, output_flags
from rtdetr_export.serving.config import BACKENDS, PYTHON_RUNTIMES, TritonOptions

# How each model is served, as the API's TritonOptions.
serving_options = option_group("options", TritonOptions, [
    click.option("--name", default=None, help="Model name (one ARTIFACT only; default: the file's stem)."),
    click.option("--max-batch", type=int, default=None,
                 help="max_batch_size (default: the engine profile's maximum, 8 for a dynamic-batch ONNX file)."),
    click.option("--instances", type=int, default=1, show_default=True, help="Model instances (instance_group count)."),
    click.option("--max-queue-delay-us", type=int, default=100, show_default=True,
                 help="How long dynamic batching may hold a request to form a larger batch."),
    click.option("--dynamic-batching/--no-dynamic-batching", default=True, show_default=True,
                 help="Let Triton combine requests into batches."),
    click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                 help="auto: tensorrt for engines, onnxruntime for ONNX; python: ONNX through our model.py."),
    click.option("--python-runtime", type=click.Choice(PYTHON_RUNTIMES), default="onnxruntime", show_default=True,
                 help="What the Python backend runs the ONNX file with."),
    click.option("--threads", type=int, default=None, help="Intra-op threads per Python-backend instance."),
    click.option("--ensemble", is_flag=True,
                 help="Add NAME_ensemble: encoded images in, detections out (pre-processing as `predict`)."),
])


@click.command("triton")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "repository", required=True, type=click.Path(path_type=str),
              help="The model repository folder (REPO/NAME/config.pbtxt, REPO/NAME/1/model.*).")
@serving_options
@output_flags("the models of the same names in an existing repository")
def triton_command(artifacts: tuple[str, ...], repository: str, options: TritonOptions, out: OutputFlags) -> None:
    """Write a Triton model repository serving ARTIFACTs (.onnx or .engine files made by rtdetr-export; a split
    artifact as its .json sidecar or either graph)."""
    from rtdetr_export.serving import write_repository

    force, quiet, as_json = out.force, out.quiet, out.as_json
    log = progress(quiet, as_json)
    result = write_repository(list(artifacts), repository, options, force, log)
    for warning in result.warnings:
        if quiet or as_json:  # a warning is never silenced: it changes how clients must call the model
            click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(result)
    elif not quiet:
        click.echo(f"wrote {result.repository} ({', '.join(m.name for m in result.models)})")
