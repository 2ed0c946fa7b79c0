"""``evaluate``: COCO accuracy of the PyTorch reference and every artifact on one dataset, each row with its
difference to the reference, per-class AP and PR curves."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rtdetr_export import __version__
from rtdetr_export.artifact import ENGINE_SUFFIXES
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.eval.dataset import CocoDataset, map_categories, read_coco
from rtdetr_export.eval.metrics import STAT_NAMES, CocoMetrics, coco_metrics
from rtdetr_export.imaging import Detections, load_image
from rtdetr_export.model import RTDETRv2
from rtdetr_export.backends.openvino_runner import PRECISION_HINTS, OpenVinoRunner
from rtdetr_export.pipeline import Detector, open_detector, reference_model

Log = Callable[[str], None]
MAX_DETECTIONS = 100  # per image, as COCO's AP@[.5:.95] | maxDets=100


@dataclass
class EvalOptions:
    """``rtdetr-export eval``'s flags."""

    annotations: str
    images: str
    batch: int = 1
    limit: int | None = None
    openvino: tuple[str, ...] = ()  # also run each ONNX artifact on OpenVINO with these precision hints
    image_size: tuple[int, int] | None = None  # run dynamic-size artifacts (and the reference) at this size

    def validate(self) -> None:
        unknown = [hint for hint in self.openvino if hint not in PRECISION_HINTS]
        if unknown:
            raise RTDetrExportError(f"unknown OpenVINO precision {unknown[0]!r}; choose from "
                                    f"{', '.join(PRECISION_HINTS)}")
        if self.batch < 1:
            raise RTDetrExportError(f"--batch must be at least 1, got {self.batch}")
        if self.limit is not None and self.limit < 1:
            raise RTDetrExportError(f"--limit must be at least 1, got {self.limit}")


@dataclass
class EvalRow:
    """One detector's accuracy: COCO metrics, and their difference to the reference row."""

    name: str
    source: str  # "reference" or the artifact's path
    precision: str
    runtime: str  # the runner: torch, onnxruntime, openvino-f32, openvino-bf16, tensorrt
    metrics: CocoMetrics
    delta: dict[str, float] | None = None  # this row minus the reference, per metric
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "precision": self.precision, "runtime": self.runtime,
                "metrics": self.metrics.to_json(), "delta_vs_reference": self.delta, "seconds": round(self.seconds, 2)}


@dataclass
class EvalReport:
    """Every row over the same images; ``skipped`` lists the paths of images the annotations name but the
    folder lacks (the rows are measured without them)."""

    dataset: dict[str, Any]
    rows: list[EvalRow]
    skipped: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                         .isoformat(timespec="seconds"))

    @property
    def reference(self) -> EvalRow | None:
        return next((row for row in self.rows if row.source == "reference"), None)

    def to_json(self) -> dict[str, Any]:
        return {"schema": "rtdetr-export/eval", "schema_version": 1, "created": self.created,
                "tool": {"name": "rtdetr-export", "version": __version__}, "dataset": self.dataset,
                "metric_names": list(STAT_NAMES), "rows": [row.to_json() for row in self.rows],
                "skipped_images": self.skipped}


def coco_predictions(image_id: int, found: Detections, class_to_category: dict[int, int]) -> list[dict[str, Any]]:
    """One image's detections as COCO results (xywh in the image's pixels); classes the dataset lacks dropped."""
    out = []
    for box, score, label in zip(found.boxes, found.scores, found.labels):
        category = class_to_category.get(int(label))
        if category is None:
            continue
        x0, y0, x1, y1 = (float(v) for v in box)
        out.append({"image_id": image_id, "category_id": category, "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score)})
    return out


def predict_dataset(detector: Detector, dataset: CocoDataset, images: list[dict[str, Any]], batch: int,
                    log: Log = lambda message: None) -> list[dict[str, Any]]:
    """Run ``detector`` over ``images`` (COCO image entries) and return its COCO results, top 100 per image."""
    results: list[dict[str, Any]] = []
    step = max(1, len(images) // 10)
    with detector:
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            pictures = [load_image(dataset.image_path(entry)) for entry in chunk]
            for entry, found in zip(chunk, detector.detect_batch(pictures, threshold=0.0, top_k=MAX_DETECTIONS)):
                results += coco_predictions(entry["id"], found, dataset.class_to_category)
            done = start + len(chunk)
            if done % step < len(chunk) or done == len(images):
                log(f"  {detector.name}: {done}/{len(images)} images")
    return results


@dataclass
class EvalSet:
    """The images a run evaluates on (those of the annotations the folder has, up to the limit), their ground
    truth, and the paths of the annotated images the folder lacks."""

    coco: CocoDataset
    images: list[dict[str, Any]]
    skipped: list[str]
    ground_truth: dict[str, Any] = field(repr=False)
    category_names: dict[int, str] = field(repr=False)

    def info(self, limit: int | None = None) -> dict[str, Any]:
        """The dataset as a report describes it."""
        return {"annotations": str(self.coco.annotations), "images_dir": str(self.coco.images_dir),
                "images": len(self.images), "annotated_images": len(self.coco.images),
                "categories": [c["name"] for c in self.coco.categories], "limit": limit}


def prepare_eval_set(options: EvalOptions, class_names: list[str] | None) -> EvalSet:
    """Read and check the annotations and the folder for a model with ``class_names``; one-line errors for an
    unusable file, unknown categories, or a folder with none of the annotated images. With ``class_names`` None
    the categories are left unmapped (a check before the model is loaded: map them with ``map_categories``)."""
    dataset = read_coco(options.annotations, options.images)
    if class_names is not None:
        dataset.class_to_category = map_categories(dataset, class_names)
    present, skipped = [], []
    for entry in dataset.images:
        if dataset.image_path(entry).is_file():
            present.append(entry)
        else:
            skipped.append(str(dataset.image_path(entry)))
    if options.limit:
        present = present[:options.limit]
    if not present:
        raise RTDetrExportError(f"none of the annotated images is in {dataset.images_dir}")
    kept = {entry["id"] for entry in present}
    ground_truth = {**dataset.data, "images": present,
                    "annotations": [a for a in dataset.data["annotations"] if a["image_id"] in kept]}
    return EvalSet(dataset, present, skipped, ground_truth, {int(c["id"]): c["name"] for c in dataset.categories})


def detector_metrics(detector: Detector, dataset: EvalSet, batch: int = 1,
                     log: Log = lambda message: None) -> CocoMetrics:
    """COCO metrics of one detector on the set's images."""
    predictions = predict_dataset(detector, dataset.coco, dataset.images, batch, log)
    return coco_metrics(dataset.ground_truth, predictions, dataset.category_names)


def _delta(row: CocoMetrics, reference: CocoMetrics) -> dict[str, float]:
    return {name: row.stats[name] - reference.stats[name] for name in STAT_NAMES}


def evaluate(artifacts: list[str | Path], options: EvalOptions, model: RTDETRv2 | None = None,
             model_path: str | None = None, log: Log = lambda message: None) -> EvalReport:
    """COCO metrics of the reference (``model``, or rebuilt from the first artifact's provenance with
    ``model_path``) and of each artifact, on the same images, at ``options.image_size`` if given (dynamic-size
    artifacts take it within their range; the reference is rebuilt for it)."""
    options.validate()
    size = options.image_size
    detectors = [(open_detector(path, size), str(path)) for path in artifacts]
    for path in artifacts:
        if not str(path).lower().endswith(ENGINE_SUFFIXES):  # an ONNX file or a split artifact's graphs
            detectors += [(Detector.from_artifact(path, lambda graph, h=hint: OpenVinoRunner(graph, h), size),
                           str(path)) for hint in options.openvino]
    if model is None and detectors:
        model = reference_model(detectors[0][0].record, model_path, log)
        # A dynamic-size artifact runs at its opt size unless one is asked for: the reference runs where it runs.
        size = size or detectors[0][0].input_size
    if model is None:
        raise RTDetrExportError("nothing to evaluate: give an artifact or --model")
    if size is not None and tuple(model.config.image_size) != tuple(size):
        model.set_image_size(*size)
    reference = Detector.from_model(model)
    names = reference.class_names
    for detector, _ in detectors:
        if list(detector.class_names) != list(names):
            raise RTDetrExportError(f"{detector.name} has other classes than the reference model; evaluate "
                                    "artifacts of one model together")
    dataset = prepare_eval_set(options, names)
    rows = []
    for detector, source in [(reference, "reference"), *detectors]:
        log(f"[eval] {detector.name} on {len(dataset.images)} images")
        started = time.perf_counter()
        metrics = detector_metrics(detector, dataset, options.batch, log)
        precision = detector.precision
        rows.append(EvalRow(detector.name, source, precision, detector.runner.name, metrics,
                            seconds=time.perf_counter() - started))
    for row in rows:
        row.delta = _delta(row.metrics, rows[0].metrics)
    return EvalReport(dataset.info(options.limit), rows, dataset.skipped)
