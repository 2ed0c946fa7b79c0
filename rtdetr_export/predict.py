"""Detect objects in image files with any artifact (or the PyTorch model) and write annotated images + COCO JSON.

Detection itself is ``pipeline.Detector``'s; this module matches against a reference and writes the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rtdetr_export import __version__
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import atomic_output, check_folder_creatable, check_output, write_text_atomic
from rtdetr_export.imaging import IMAGE_SUFFIXES, Detections, iou_matrix, list_images, load_image
from rtdetr_export.imaging.annotate import annotate
from rtdetr_export.pipeline.detector import Detector

MATCH_IOU = 0.5  # a detection agrees with the reference when a same-label reference box overlaps this much


def expand_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Image paths from files and folders, plus a failure entry for each input that yields none."""
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
            ious = iou_matrix(candidate.boxes[i:i + 1].astype(np.float64),
                              reference.boxes[options].astype(np.float64))[0]
            best = int(np.argmax(ious))
            if ious[best] >= MATCH_IOU:
                unmatched_ref.discard(options[best])
                continue
        disagreeing.add(i)
    return disagreeing, sorted(unmatched_ref)


def _nothing_read(failures: list[dict[str, str]]) -> RTDetrExportError:
    """The one error of a run in which no image could be read (nothing is written then)."""
    first = failures[0]["error"] if failures else "no input images"
    more = f" (and {len(failures) - 1} more unreadable input(s))" if len(failures) > 1 else ""
    return RTDetrExportError(f"no image could be read: {first}{more}; give image files or folders of them")


@dataclass
class PredictResult:
    """What ``predict_images`` did: the predictions (predictions.json's COCO-style content), the files written and
    the per-file failures."""

    predictions: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, str]]:
        return self.predictions["failures"]


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

    A file that cannot be read is recorded in ``failures`` and the rest are still processed; when none can be, this
    raises and writes nothing (the folder is made only once an image has been read). With
    ``reference`` (normally the PyTorch model), each detection is matched to the reference's (same label,
    IoU >= 0.5): disagreements are drawn in red, missed reference boxes dashed, and counted in the JSON.
    """
    if not 0.0 <= threshold < 1.0:
        raise RTDetrExportError(f"threshold must be in [0, 1), got {threshold}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RTDetrExportError(f"{output_dir} is a file; give a folder for the annotated images")
    paths, failures = expand_inputs(inputs)
    if not paths:
        raise _nothing_read(failures)
    names = _output_names(paths)
    json_path = output_dir / "predictions.json"
    _check_outputs(output_dir, [json_path] + [output_dir / name for name in names], force)

    images, annotations = [], []
    result = PredictResult({})
    detectors = [detector] + ([reference] if reference else [])
    for active in detectors:
        active.activate()
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
                disagreeing, missed, entry["reference"] = _against_reference(found, expected)
            annotations += _coco_annotations(found, image_id, len(annotations), detector.class_names,
                                             disagreeing if reference is not None else None)
            drawn = annotate(picture, found, detector.class_names, disagreeing, missed)
            output_dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(output_dir / name) as tmp:
                drawn.save(tmp, format="PNG")
            result.written.append(output_dir / name)
            images.append(entry)
            log(f"{path}: {len(found)} detections -> {output_dir / name}")
    finally:
        for active in detectors:
            active.deactivate()

    if not images:
        raise _nothing_read(failures)
    result.predictions = _predictions_json(detector, reference, threshold, images, annotations, failures)
    write_text_atomic(json_path, json.dumps(result.predictions, indent=2) + "\n")
    result.written.append(json_path)
    return result


def _check_outputs(output_dir: Path, outputs: list[Path], force: bool) -> None:
    """Refuse, before any work, outputs that exist without ``force``; for a folder that does not exist yet, check it
    can be made (it is made only once an image has been read, so a run that fails first leaves nothing behind)."""
    if output_dir.is_dir():
        for path in outputs:
            check_output(path, force)
    else:
        check_folder_creatable(output_dir)


def _against_reference(found: Detections, expected: Detections) -> tuple[set[int], Detections, dict[str, int]]:
    """Which of ``found`` the reference does not confirm, the reference's boxes nothing found, and the counts."""
    disagreeing, missed_idx = match_reference(found, expected)
    missed = Detections(expected.boxes[missed_idx], expected.scores[missed_idx], expected.labels[missed_idx])
    return disagreeing, missed, {"detections": len(expected), "agreeing": len(found) - len(disagreeing),
                                 "not_in_reference": len(disagreeing), "missed": len(missed_idx)}


def _coco_annotations(found: Detections, image_id: int, first_id: int, class_names: list[str],
                      disagreeing: set[int] | None) -> list[dict[str, Any]]:
    """``found`` as COCO annotations (bbox [x, y, w, h] in pixels), numbered from ``first_id``; with a reference
    (``disagreeing`` not None) each says whether the reference confirms it."""
    out = []
    for i in range(len(found)):
        x0, y0, x1, y1 = (float(v) for v in found.boxes[i])
        label = int(found.labels[i])
        annotation = {"id": first_id + i, "image_id": image_id, "category_id": label,
                      "category_name": class_names[label] if label < len(class_names) else str(label),
                      "bbox": [x0, y0, x1 - x0, y1 - y0], "area": max(0.0, x1 - x0) * max(0.0, y1 - y0),
                      "score": float(found.scores[i]), "iscrowd": 0}
        if disagreeing is not None:
            annotation["agrees_with_reference"] = i not in disagreeing
        out.append(annotation)
    return out


def _predictions_json(detector: Detector, reference: Detector | None, threshold: float, images: list[dict],
                      annotations: list[dict], failures: list[dict]) -> dict[str, Any]:
    """predictions.json: COCO-style images, categories and annotations, with how they were made."""
    return {
        "info": {"tool": f"rtdetr-export {__version__}", "backend": detector.name,
                 "precision_hint": getattr(detector.runner, "precision_hint", None), "threshold": threshold,
                 "reference": reference.name if reference else None,
                 "bbox_format": "COCO [x, y, width, height] in the image's pixels",
                 "category_ids": "the model's class indices (0-based, as in its id2label)"},
        "images": images,
        "categories": [{"id": i, "name": n} for i, n in enumerate(detector.class_names)],
        "annotations": annotations,
        "failures": failures,
    }
