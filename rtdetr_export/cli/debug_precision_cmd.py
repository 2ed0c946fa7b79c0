"""``rtdetr-export debug-precision``: rank the layers that break an FP16/INT8 artifact, find what to keep in float."""

from __future__ import annotations

import click

from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.pipeline.debug_precision import DEFAULT_CANDIDATES, debug_precision

SHOWN = 10


@click.command("debug-precision")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.option("--model", "model_path", type=click.Path(path_type=str), default=None,
              help="The checkpoint the artifact was exported from (default: what its provenance names).")
@click.option("--calib-images", type=click.Path(exists=True, file_okay=False, path_type=str), default=None,
              help="Images for the layer-wise comparison and the re-calibration (default: synthetic scenes).")
@click.option("--count", type=int, default=4, show_default=True, help="Images compared layer by layer.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=str), default=None,
              help="Images each candidate is verified on (default: verification's synthetic scenes).")
@click.option("--max-parts", type=int, default=DEFAULT_CANDIDATES, show_default=True,
              help="Worst parts the search may keep in float.")
@click.option("--limits", type=click.Choice(["fp16", "int8"]), default=None,
              help="Judge by these precision limits (default: the artifact's; fp16 asks INT8 to agree as FP16 does).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def debug_precision_command(artifact, model_path, calib_images, count, images, max_parts, limits, quiet,
                            as_json) -> None:
    """Compare every layer of an FP16/INT8 ARTIFACT with FP32 and search the fewest parts to keep in float."""
    result = debug_precision(artifact, model_path, calib_images, images, count, max_parts, limits,
                             progress(quiet, as_json))
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{'added':>8} {'error':>8}  {'prec':4}  {'part':44}  node (op)")
        for row in result.layers[:SHOWN]:
            click.echo(f"{row.introduced:8.4f} {row.error:8.4f}  {row.precision:4}  {row.part:44}  "
                       f"{row.node} ({row.op})")
        if result.first_jump:
            jump = result.first_jump
            click.echo(f"error first jumps at {jump.node} ({jump.op}, {jump.part})")
        if result.baseline.passed:
            click.echo(f"{artifact} is within the {result.precision} limits: nothing needs to stay in float")
        elif result.float_parts is not None:
            click.echo(f"keep in float: {', '.join(result.float_parts)}")
            click.echo(f"flags: {result.command_flags}")
    if not result.passed:
        raise RTDetrExportError(f"no set of the {len(result.parts)} worst parts kept in float brings {artifact} "
                                f"within the {result.precision} limits ({'; '.join(result.baseline.failures)})")
