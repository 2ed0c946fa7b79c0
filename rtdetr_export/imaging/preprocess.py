"""Image -> model input: RGB, resized to the model's input size (aspect not kept), [0, 1], NCHW float32.

This is what transformers' RTDetrImageProcessor and the original deploy scripts do, so detections agree.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rtdetr_export.errors import RTDetrExportError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _upright_rgb(image: Image.Image) -> Image.Image:
    """The decoded pixels turned as image viewers show them, in RGB.

    Cameras store a portrait photo as landscape pixels plus an EXIF orientation tag; every viewer (and every
    annotation tool) shows the turned picture, so that is the image detections and boxes must refer to.
    """
    image.load()
    return ImageOps.exif_transpose(image).convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Decode an image file to RGB, turned upright by its EXIF orientation; unreadable or non-image files raise
    RTDetrExportError."""
    path = Path(path)
    if not path.is_file():
        raise RTDetrExportError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            return _upright_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RTDetrExportError(f"{path}: not a readable image ({type(exc).__name__}); "
                                f"use one of {', '.join(IMAGE_SUFFIXES)}") from None


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, ...) to RGB exactly as ``load_image`` decodes a file; the Triton
    ensemble's pre-processing step receives images this way."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _upright_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RTDetrExportError(f"{name}: not a decodable image ({type(exc).__name__}, {len(data)} bytes)") from None


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted; an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RTDetrExportError(f"{folder} is not a folder of images")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise RTDetrExportError(f"{folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def preprocess(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """One RGB image -> [1, 3, H, W] float32 in [0, 1], resized bilinearly to ``size`` = (height, width)."""
    height, width = size
    resized = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    return np.ascontiguousarray(array.transpose(2, 0, 1)[None])


def preprocess_batch(images: list[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """Several images -> [N, 3, H, W] float32."""
    return np.concatenate([preprocess(image, size) for image in images], axis=0)
