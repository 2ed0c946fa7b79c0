"""``rtdetr-export openvino``: an OpenVINO IR (MODEL.xml + MODEL.bin) from one of our ONNX files, INT8 by NNCF when
asked, verified on OpenVINO CPU against PyTorch."""

from __future__ import annotations

import click

from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT
from rtdetr_export.artifact.records.openvino import IR_WEIGHTS
from rtdetr_export.backends.openvino_runner import PRECISION_HINTS
from rtdetr_export.cli.common import emit_json, progress
from rtdetr_export.cli.options import OutputFlags, option_group, output_flags
from rtdetr_export.pipeline.openvino import IR_PRECISIONS, OpenVinoExportOptions, export_openvino
from rtdetr_export.precision.nncf_int8 import NNCF_RECIPES

ir_options = option_group("options", OpenVinoExportOptions, [
    click.option("--precision", type=click.Choice(list(IR_PRECISIONS)), default="fp32", show_default=True,
                 help="fp32: the ONNX file's precision as it is; int8: NNCF quantizes the IR (an FP32 ONNX file)."),
    click.option("--nncf-recipe", "recipe", type=click.Choice(list(NNCF_RECIPES)), default="rtdetr",
                 show_default=True,
                 help="INT8: rtdetr (NNCF's transformer mode, query selection, score/box heads and attention-weight "
                      "paths kept float) or default (nncf.quantize's defaults, nothing kept float)."),
    click.option("--calib-images", type=click.Path(path_type=str), default=None,
                 help="Folder of real images: the first --calib-count by file name calibrate, the rest verify "
                      "(default: synthetic scenes, with a notice)."),
    click.option("--calib-count", type=int, default=DEFAULT_CALIBRATION_COUNT, show_default=True,
                 help="Calibration images used (fewer if the folder has fewer)."),
    click.option("--weights", type=click.Choice(list(IR_WEIGHTS)), default="fp16", show_default=True,
                 help="How the IR stores float weights: fp16 (OpenVINO's default; computed in f32, judged by FP16's "
                      "agreement limits) or fp32 (bit for bit; judged by FP32's tensor limits)."),
    click.option("--inference-precision", "hint", type=click.Choice(list(PRECISION_HINTS)), default="f32",
                 show_default=True,
                 help="OpenVINO CPU precision hint the IR is verified with and recorded for (bf16 runs as f32 on a "
                      "CPU without AVX-512 BF16 / AMX; the sidecar says which)."),
    click.option("--verify/--no-verify", default=True, show_default=True, help="Check the IR against PyTorch."),
    click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
                 help="Folder of real images for verification (default: the part of --calib-images calibration did "
                      "not read; FP32: the images that verified the ONNX file)."),
])


@click.command("openvino")
@click.argument("onnx_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--model", "model_path", type=click.Path(path_type=str), default=None,
              help="Checkpoint the ONNX file came from (not needed for random-weight presets or Hub ids).")
@ir_options
@output_flags("OUTPUT, its .bin and its .xml.json sidecar")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .xml file to write.")
def openvino_command(onnx_file: str, model_path: str | None, options: OpenVinoExportOptions, out: OutputFlags,
                     output: str) -> None:
    """Convert ONNX_FILE (written by `rtdetr-export onnx`) to an OpenVINO IR and prove it on OpenVINO CPU; with
    --precision int8, quantize it with NNCF first."""
    result = export_openvino(onnx_file, output, options, model_path=model_path, force=out.force,
                             log=progress(out.quiet, out.as_json))
    if out.as_json:
        emit_json(result.record)
    elif not out.quiet:
        click.echo(f"wrote {result.path}, {result.weights.name} "
                   f"({'verified' if result.verification else 'NOT verified'}) and {result.sidecar}")
