"""Calibration inputs for the precision passes: the user's images, else seeded synthetic scenes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.artifact import make_feed
from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT
from rtdetr_export.imaging import load_image, preprocess
from rtdetr_export.imaging.inputs import calibration_split, synthetic_images

# Verification draws synthetic scenes with seeds 0, 1, ...; calibrating on other scenes keeps the parity
# report an out-of-sample measurement.
SYNTHETIC_SEED = 1000
DEFAULT_COUNT = DEFAULT_CALIBRATION_COUNT


@dataclass
class CalibrationSet:
    """Pre-processed calibration images and where they came from."""

    images: np.ndarray                 # [N, 3, H, W] float32 in [0, 1]
    sizes: list[tuple[int, int]]       # original (height, width) of each image
    source: str                        # "synthetic" or the folder
    files: list[str]

    def feeds(self, head: str) -> list[dict[str, np.ndarray]]:
        """One batch-1 feed per image with the inputs ``head`` takes."""
        return [make_feed(head, image[None], [size]) for image, size in zip(self.images, self.sizes)]

    def to_json(self) -> dict[str, Any]:
        """Where the calibration images came from, as the precision recipe records it."""
        if self.source == "synthetic":
            return {"source": "synthetic", "count": len(self.images), "seed": SYNTHETIC_SEED,
                    "note": "seeded synthetic scenes (rtdetr_export.imaging.inputs.synthetic_images); "
                            "calibrate on real images with --calib-images for deployment"}
        return {"source": self.source, "count": len(self.images), "files": self.files}


def calibration_set(size: tuple[int, int], count: int = DEFAULT_COUNT,
                    images_dir: str | Path | None = None) -> CalibrationSet:
    """``count`` calibration images at the model's input ``size``: the first ``count`` of the folder by file name
    (``calibration_split``: verification judges on the rest); a folder with fewer images uses them all."""
    if count < 1:
        raise RTDetrExportError(f"--calib-count must be at least 1, got {count}")
    if images_dir is None:
        images = synthetic_images(count, size, seed=SYNTHETIC_SEED)
        return CalibrationSet(images, [tuple(size)] * count, "synthetic", [])
    paths, _ = calibration_split(images_dir, count)
    pictures = [load_image(path) for path in paths]
    images = np.concatenate([preprocess(picture, size) for picture in pictures], axis=0)
    return CalibrationSet(images, [(p.height, p.width) for p in pictures], str(images_dir),
                          [p.name for p in paths])
