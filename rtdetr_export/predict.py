"""Detect objects in image files with any artifact (or the PyTorch model) and write annotated images + COCO JSON.

A ``Detector`` is a runner plus the facts of the tensor contract it needs (head, input size, class names), so
an ONNX file, a TensorRT engine and the reference model all turn an image into the same ``Detections``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from rtdetr_export import __version__
from rtdetr_export.backends import OnnxRuntimeRunner, Runner, TorchRunner
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.heads import INPUTS, OUTPUTS, wrap
from rtdetr_export.files import atomic_output, check_output, write_text_atomic
from rtdetr_export.imaging import IMAGE_SUFFIXES, Detections, list_images, load_image, postprocess, preprocess
from rtdetr_export.imaging.annotate import annotate
from rtdetr_export.verify.compare import box_iou

MATCH_IOU = 0.5  # a detection agrees with the reference when a same-label reference box overlaps this much


@dataclass
class Detector:
    """Turns one image into Detections through ``runner`` under the tensor contract of ``head``."""

    runner: Runner
    head: str
    input_size: tuple[int, int]
    class_names: list[str]
    name: str
    static_batch: int | None = None  # an artifact exported for a fixed batch gets the image repeated

    def detect(self, image: Image.Image, threshold: float) -> Detections:
        """Detections above ``threshold`` in the image's own pixels, best first."""
        batch = preprocess(image, self.input_size)
        repeat = self.static_batch or 1
        feed: dict[str, np.ndarray] = {"images": np.repeat(batch, repeat, axis=0)}
        if self.head == "detections":
            feed["orig_target_sizes"] = np.array([[image.width, image.height]] * repeat, dtype=np.int64)
        out = self.runner.infer(feed)
        if self.head == "raw":
            return postprocess(out["logits"][:1], out["pred_boxes"][:1], [(image.height, image.width)],
                               threshold)[0]
        keep = out["scores"][0] > threshold
        return Detections(out["boxes"][0][keep].astype(np.float32), out["scores"][0][keep].astype(np.float32),
                          out["labels"][0][keep].astype(np.int64))


def detector_for_model(model: Any) -> Detector:
    """The PyTorch model itself (raw head, float32 on CPU)."""
    runner = TorchRunner(wrap(model, "raw"), INPUTS["raw"], OUTPUTS["raw"])
    source = model.source
    name = f"torch ({source.format}{': ' + Path(source.path).name if source.path else ''})"
    return Detector(runner, "raw", tuple(model.config.image_size), model.config.class_names, name)


def detector_for_artifact(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """A detector for one of our artifacts (.onnx, or a TensorRT .engine) and the artifact's provenance."""
    path = Path(path)
    if path.suffix == ".engine":
        return _engine_detector(path)
    from rtdetr_export.export.provenance import load_artifact_provenance

    provenance = load_artifact_provenance(path)
    export = provenance["export"]
    detector = Detector(OnnxRuntimeRunner(path), export["head"], tuple(provenance["input_size"]),
                        provenance["classes"], f"onnxruntime ({path.name}, {provenance['precision']})",
                        None if export.get("dynamic_batch") else export.get("batch"))
    return detector, provenance


def _engine_detector(path: Path) -> tuple[Detector, dict[str, Any]]:
    from rtdetr_export.backends.tensorrt import TensorRTRunner
    from rtdetr_export.backends.tensorrt.engine import FORMAT, engine_sidecar_path

    sidecar = engine_sidecar_path(path)
    if not path.is_file():
        raise RTDetrExportError(f"{path}: no such engine file")
    try:
        provenance = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        raise RTDetrExportError(f"{path}: no readable sidecar {sidecar.name} next to it; use an engine built by "
                                "`rtdetr-export trt`") from None
    if provenance.get("format") != FORMAT:
        raise RTDetrExportError(f"{sidecar} was not written by `rtdetr-export trt`")
    export = provenance["export"]
    detector = Detector(TensorRTRunner(path), export["head"], tuple(provenance["input_size"]),
                        provenance["classes"], f"tensorrt ({path.name}, {provenance['precision']})",
                        None if export.get("dynamic_batch") else export.get("batch"))
    return detector, provenance


def expand_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Image paths from files and folders, plus a failure record for each input that yields none."""
    paths: list[Path] = []
    failures: list[dict[str, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            try:
                paths.extend(list_images(item))
            except RTDetrExportError as exc:
                failures.append({"file": str(item), "error": str(exc)})
        elif item.suffix.lower() not in IMAGE_SUFFIXES and item.is_file():
            failures.append({"file": str(item), "error": f"{item}: unsupported image format {item.suffix!r}; use one "
                                                         f"of {', '.join(IMAGE_SUFFIXES)}"})
        else:
            paths.append(item)  # a missing file fails when it is loaded, with its own message
    return paths, failures


def match_reference(candidate: Detections, reference: Detections) -> tuple[set[int], list[int]]:
    """Greedy one-to-one matching by IoU within a label: (unmatched candidate indices, unmatched reference ones)."""
    unmatched_ref = set(range(len(reference)))
    disagreeing: set[int] = set()
    for i in range(len(candidate)):
        options = [j for j in unmatched_ref if reference.labels[j] == candidate.labels[i]]
        if options:
            ious = box_iou(np.repeat(candidate.boxes[i:i + 1], len(options), 0).astype(np.float64),
                           reference.boxes[options].astype(np.float64))
            best = int(np.argmax(ious))
            if ious[best] >= MATCH_IOU:
                unmatched_ref.discard(options[best])
                continue
        disagreeing.add(i)
    return disagreeing, sorted(unmatched_ref)


@dataclass
class PredictResult:
    """What ``predict_images`` did: the COCO-style record, the files written and the per-file failures."""

    record: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, str]]:
        return self.record["failures"]


def _output_names(paths: list[Path]) -> list[str]:
    # Two inputs with the same stem (a/x.jpg, b/x.png) must not overwrite each other's annotation.
    names, seen = [], {}
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        names.append(f"{path.stem}.png" if count == 0 else f"{path.stem}_{count}.png")
    return names


def predict_images(inputs: list[str | Path], detector: Detector, output_dir: str | Path, threshold: float = 0.5,
                   reference: Detector | None = None, force: bool = False,
                   log: Callable[[str], None] = lambda message: None) -> PredictResult:
    """Detect in every image, write OUTDIR/<image>.png (annotated) and OUTDIR/predictions.json.

    A file that cannot be read is recorded in ``failures`` and the rest are still processed. With
    ``reference`` (normally the PyTorch model), each detection is matched to the reference's (same label,
    IoU >= 0.5): disagreements are drawn in red, missed reference boxes dashed, and counted in the JSON.
    """
    if not 0.0 <= threshold < 1.0:
        raise RTDetrExportError(f"threshold must be in [0, 1), got {threshold}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RTDetrExportError(f"{output_dir} is a file; give a folder for the annotated images")
    output_dir.mkdir(parents=True, exist_ok=True)
    paths, failures = expand_inputs(inputs)
    names = _output_names(paths)
    json_path = check_output(output_dir / "predictions.json", force)
    for name in names:
        check_output(output_dir / name, force)

    images, annotations = [], []
    result = PredictResult({})
    runners = [detector.runner] + ([reference.runner] if reference else [])
    for runner in runners:
        runner.activate()
    try:
        for image_id, (path, name) in enumerate(zip(paths, names)):
            try:
                picture = load_image(path)
            except RTDetrExportError as exc:
                failures.append({"file": str(path), "error": str(exc)})
                continue
            found = detector.detect(picture, threshold)
            entry: dict[str, Any] = {"id": image_id, "file_name": str(path), "width": picture.width,
                                     "height": picture.height, "annotated": name, "detections": len(found)}
            disagreeing, missed = set(), None
            if reference is not None:
                expected = reference.detect(picture, threshold)
                disagreeing, missed_idx = match_reference(found, expected)
                missed = Detections(expected.boxes[missed_idx], expected.scores[missed_idx],
                                    expected.labels[missed_idx])
                entry["reference"] = {"detections": len(expected), "agreeing": len(found) - len(disagreeing),
                                      "not_in_reference": len(disagreeing), "missed": len(missed_idx)}
            for i in range(len(found)):
                x0, y0, x1, y1 = (float(v) for v in found.boxes[i])
                label = int(found.labels[i])
                annotation = {"id": len(annotations), "image_id": image_id, "category_id": label,
                              "category_name": detector.class_names[label] if label < len(detector.class_names)
                              else str(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                              "area": max(0.0, x1 - x0) * max(0.0, y1 - y0), "score": float(found.scores[i]),
                              "iscrowd": 0}
                if reference is not None:
                    annotation["agrees_with_reference"] = i not in disagreeing
                annotations.append(annotation)
            drawn = annotate(picture, found, detector.class_names, disagreeing, missed)
            with atomic_output(output_dir / name) as tmp:
                drawn.save(tmp, format="PNG")
            result.written.append(output_dir / name)
            images.append(entry)
            log(f"{path}: {len(found)} detections -> {output_dir / name}")
    finally:
        for runner in runners:
            runner.deactivate()

    result.record = {
        "info": {"tool": f"rtdetr-export {__version__}", "backend": detector.name, "threshold": threshold,
                 "reference": reference.name if reference else None,
                 "bbox_format": "COCO [x, y, width, height] in the image's pixels",
                 "category_ids": "the model's class indices (0-based, as in its id2label)"},
        "images": images,
        "categories": [{"id": i, "name": n} for i, n in enumerate(detector.class_names)],
        "annotations": annotations,
        "failures": failures,
    }
    write_text_atomic(json_path, json.dumps(result.record, indent=2) + "\n")
    result.written.append(json_path)
    return result
