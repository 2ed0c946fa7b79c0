"""``rtdetr-export predict``: boxes on images from any artifact or the PyTorch model, plus COCO-style JSON."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from rtdetr_export.cli.common import emit_json, log, progress
from rtdetr_export.cli.options import ModelChoice, OutputFlags, model_choice, openvino_option, option_group
from rtdetr_export.errors import RTDetrExportError


@dataclass(frozen=True)
class Source:
    """What runs the images: an --artifact (ONNX Runtime, or OpenVINO under --openvino), a served --triton model,
    or (neither) the PyTorch model."""

    artifact: str | None = None
    triton_url: str | None = None
    triton_model: str | None = None
    openvino_hint: str | None = None


source_options = option_group("source", Source, [
    click.option("--artifact", type=click.Path(dir_okay=False, path_type=str), default=None,
                 help="An .onnx file, a split artifact (its .json or either graph) or a TensorRT .engine made by "
                      "rtdetr-export."),
    click.option("--triton", "triton_url", default=None, metavar="URL",
                 help="Run on a Triton server instead (http://host:8000 or grpc://host:8001); needs --triton-model."),
    click.option("--triton-model", default=None, metavar="NAME",
                 help="A model written by `rtdetr-export triton`: NAME (tensors) or NAME_ensemble (encoded images)."),
    openvino_option,
])
predict_output = option_group("out", OutputFlags, [
    click.option("--force", is_flag=True, help="Overwrite existing outputs in the folder."),
    click.option("--quiet", is_flag=True, help="No progress lines (errors are still printed)."),
    click.option("--json", "as_json", is_flag=True, help="Print predictions.json to stdout as well."),
])


@click.command("predict")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str))
@source_options
@model_choice
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Keep detections scoring above this.")
@click.option("--show-reference", is_flag=True,
              help="Also run the PyTorch model and mark where the artifact disagrees with it.")
@click.option("-o", "--output-dir", default="predictions", show_default=True, type=click.Path(path_type=str),
              help="Folder for the annotated PNGs and predictions.json.")
@predict_output
def predict_command(images: tuple[str, ...], source: Source, model: ModelChoice, threshold: float,
                    show_reference: bool, output_dir: str, out: OutputFlags) -> None:
    """Detect objects in IMAGES (files or folders); exit 1 if any image could not be processed."""
    artifact, triton_url, triton_model, openvino_hint = (source.artifact, source.triton_url, source.triton_model,
                                                         source.openvino_hint)
    model_path, preset, method, image_size = model.model_path, model.preset, model.method, model.image_size
    force, quiet, as_json = out.force, out.quiet, out.as_json
    from rtdetr_export.artifact import ENGINE_SUFFIXES
    from rtdetr_export.pipeline import Detector, reference_model
    from rtdetr_export.predict import predict_images

    reference = None
    if (triton_url is None) != (triton_model is None):
        raise RTDetrExportError("--triton URL and --triton-model NAME go together")
    if openvino_hint is not None and (artifact is None or artifact.lower().endswith(ENGINE_SUFFIXES)):
        raise RTDetrExportError("--openvino runs an ONNX file or a split artifact: give --artifact FILE.onnx")
    if triton_url is not None:
        if artifact or show_reference or model_path or preset or method or image_size:
            raise RTDetrExportError("--triton runs the served model: drop --artifact, --show-reference and the model "
                                    "options (the served config carries the model's provenance)")
        from rtdetr_export.serving.client import open_triton_detector

        detector = open_triton_detector(triton_url, triton_model)
    elif artifact is None:
        if show_reference:
            raise RTDetrExportError("--show-reference compares an --artifact with the PyTorch model; "
                                    "give --artifact FILE")
        detector = Detector.from_model(model.load(quiet or as_json))
    else:
        if preset or method:
            raise RTDetrExportError("--preset and --method come from the artifact; with --artifact, --model only "
                                    "names the checkpoint for --show-reference and --image-size picks a "
                                    "dynamic-size file's input size")
        graph = None
        if openvino_hint is not None:
            from rtdetr_export.backends.openvino_runner import OpenVinoRunner

            graph = lambda path: OpenVinoRunner(path, openvino_hint)  # noqa: E731
        detector = Detector.from_artifact(artifact, graph, image_size)
        if show_reference:
            loaded = reference_model(detector.record, model_path, log)
            loaded.set_image_size(*detector.input_size)  # compare at the size the artifact runs at
            reference = Detector.from_model(loaded)
    result = predict_images(list(images), detector, output_dir, threshold, reference, force,
                            progress(quiet, as_json))
    for failure in result.failures:  # one line per file that could not be processed; the others went on
        log(f"error: {failure['error']}")
    if as_json:
        emit_json(result.predictions)
    elif not quiet:
        click.echo(f"wrote {len(result.predictions['images'])} annotated image(s) and "
                   f"{result.written[-1]} ({len(result.predictions['annotations'])} detections)")
    if result.failures:
        sys.exit(1)
