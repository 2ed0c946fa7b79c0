"""``Detector``: one object for the PyTorch model and every artifact alike, image in, ``Detections`` out.

A detector is a runner plus the facts of the tensor contract it needs (head, input size, class names), read
from the artifact's provenance, so an ONNX file, a split artifact, a TensorRT engine and the reference model all
turn an image into the same ``Detections``. predict, eval and bench's end-to-end rows use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
from PIL import Image

from rtdetr_export.artifact import ArtifactRecord, make_feed, open_artifact
from rtdetr_export.backends import OnnxRuntimeRunner, Runner, TorchRunner, artifact_runner
from rtdetr_export.backends.split_runner import GraphRunner
from rtdetr_export.imaging import Detections, postprocess, preprocess_batch
from rtdetr_export.model import RTDETRv2
from rtdetr_export.model.heads import INPUTS, OUTPUTS, wrap


@dataclass
class Detector:
    """Turns images into Detections through ``runner`` under the tensor contract of ``head``.

    Use as a context manager (or call ``activate``/``deactivate``) around many ``detect`` calls.
    """

    runner: Runner
    head: str
    input_size: tuple[int, int]
    class_names: list[str]
    name: str
    static_batch: int | None = None  # an artifact exported for a fixed batch gets its inputs padded to it
    record: ArtifactRecord | None = field(default=None, repr=False)  # None for the PyTorch model

    @classmethod
    def from_model(cls, model: RTDETRv2) -> "Detector":
        """The PyTorch model itself (raw head, float32 on CPU)."""
        runner = TorchRunner(wrap(model, "raw"), INPUTS["raw"], OUTPUTS["raw"])
        source = model.source
        name = f"torch ({source.format}{': ' + Path(source.path).name if source.path else ''})"
        return cls(runner, "raw", tuple(model.config.image_size), model.config.class_names, name)

    @classmethod
    def from_artifact(cls, path: str | Path, graph: GraphRunner | None = None,
                      image_size: tuple[int, int] | None = None) -> "Detector":
        """One of our artifacts: an ONNX file, a split artifact (its sidecar or either graph) or a TensorRT engine.
        ``graph`` runs each ONNX graph (default ONNX Runtime; e.g. OpenVINO under a hint).

        Images are resized to the artifact's size: a fixed-size file's own; for a dynamic-size file
        ``image_size`` if given (one-line error outside its range), else its opt size."""
        path = Path(path)
        record = open_artifact(path)
        size = record.run_size(image_size, path.name)
        runner = artifact_runner(path, record, graph or OnnxRuntimeRunner)
        return cls(runner, record.head, size, record.classes, f"{runner.name} ({path.name}, {record.precision})",
                   record.static_batch, record)

    @property
    def precision(self) -> str:
        """The artifact's precision ("fp32" for the PyTorch model)."""
        return self.record.precision if self.record else "fp32"

    def activate(self) -> None:
        self.runner.activate()

    def deactivate(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> "Detector":
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def detect_batch(self, images: list[Image.Image], threshold: float = 0.0,
                     top_k: int | None = None) -> list[Detections]:
        """Detections above ``threshold`` in each image's own pixels, best first (at most ``top_k`` each)."""
        sizes = [(image.height, image.width) for image in images]
        batch = preprocess_batch(images, self.input_size)
        count = len(images)
        if self.static_batch and count != self.static_batch:
            if count > self.static_batch:
                return [d for i in range(0, count, self.static_batch)
                        for d in self.detect_batch(images[i:i + self.static_batch], threshold, top_k)]
            pad = self.static_batch - count  # repeat the last image: a static graph takes exactly its batch
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
            sizes = sizes + [sizes[-1]] * pad
        out = self.runner.infer(make_feed(self.head, batch, sizes))
        if self.head == "raw":
            return postprocess(out["logits"][:count], out["pred_boxes"][:count], sizes[:count], threshold, top_k)
        found = []
        for i in range(count):
            keep = out["scores"][i] > threshold
            detections = Detections(out["boxes"][i][keep].astype(np.float32),
                                    out["scores"][i][keep].astype(np.float32), out["labels"][i][keep].astype(np.int64))
            found.append(detections if top_k is None else Detections(detections.boxes[:top_k],
                                                                     detections.scores[:top_k],
                                                                     detections.labels[:top_k]))
        return found

    def detect(self, image: Image.Image, threshold: float = 0.5) -> Detections:
        """Detections above ``threshold`` in one image's own pixels, best first."""
        return self.detect_batch([image], threshold)[0]


def open_detector(source: RTDETRv2 | str | Path, image_size: tuple[int, int] | None = None) -> Detector:
    """A Detector for a model or an artifact path: the one entry point predict, eval and users call.
    ``image_size`` picks a dynamic-size artifact's input size within its range (a model is run at its own)."""
    if isinstance(source, RTDETRv2):
        return Detector.from_model(source)
    return Detector.from_artifact(source, image_size=image_size)
