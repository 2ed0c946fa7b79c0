"""The click group; user errors become one line on stderr and a non-zero exit code."""

from __future__ import annotations

import sys
import warnings

import click

from rtdetr_export import __version__
from rtdetr_export.errors import RTDetrExportError, RTDetrExportWarning


def _one_line_warnings(show):
    """``warnings.showwarning`` that prints our warnings as one ``warning:`` line and leaves others to ``show``."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RTDetrExportWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warnings(warnings.showwarning)
                warnings.simplefilter("always", RTDetrExportWarning)
                return super().invoke(ctx)
        except RTDetrExportError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtdetr-export")
def main() -> None:
    """Export RT-DETR (v1 and v2) detectors to verified ONNX and TensorRT artifacts."""


def _register() -> None:
    from rtdetr_export.cli.bench_cmd import bench_command
    from rtdetr_export.cli.debug_precision_cmd import debug_precision_command
    from rtdetr_export.cli.describe import describe
    from rtdetr_export.cli.eval_cmd import eval_command
    from rtdetr_export.cli.inspect_cmd import inspect_command
    from rtdetr_export.cli.onnx_cmd import onnx_command
    from rtdetr_export.cli.openvino_cmd import openvino_command
    from rtdetr_export.cli.predict_cmd import predict_command
    from rtdetr_export.cli.select_cmd import select_command
    from rtdetr_export.cli.serve_bench_cmd import serve_bench_command
    from rtdetr_export.cli.serve_cmd import serve_command
    from rtdetr_export.cli.triton_cmd import triton_command
    from rtdetr_export.cli.trt_cmd import trt_command
    from rtdetr_export.cli.verify_cmd import verify_command

    for command in (describe, onnx_command, verify_command, inspect_command, predict_command, bench_command,
                    eval_command, trt_command, openvino_command, select_command, triton_command,
                    serve_bench_command, debug_precision_command, serve_command):
        main.add_command(command)


_register()
