"""Writes the cpp_* test images (run once; the images are committed). Drawn with PIL, no third-party content.

- cpp_shapes.png      211x157 RGB: gradient background, filled shapes (upscaled on both axes to 320x320)
- cpp_palette.png     97x61 palette image with a transparent index (PIL mode P -> RGB path)
- cpp_street.jpg      640x360 baseline JPEG, 4:2:0 (downscaled, horizontal pass first)
- cpp_portrait.jpg    180x560 progressive JPEG, 4:4:4 (height shrinks most: vertical pass first)
- cpp_gray.jpg        150x120 greyscale JPEG
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def scene(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 150 * x / width, 200 - 120 * y / height, 90 + 60 * np.sin((x + y) / 23.0)], -1)
    base += rng.normal(0, 4, base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
        x1, y1 = x0 + rng.integers(width // 10, width // 3), y0 + rng.integers(height // 10, height // 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour, outline=(0, 0, 0))
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
    draw.line([(0, height - 1), (width - 1, 0)], fill=(255, 255, 255), width=3)
    return image


def main() -> None:
    scene(211, 157, 1).save(HERE / "cpp_shapes.png", optimize=True)
    scene(97, 61, 2).quantize(24).save(HERE / "cpp_palette.png", transparency=5)
    scene(640, 360, 3).save(HERE / "cpp_street.jpg", quality=88, subsampling=2)
    scene(180, 560, 4).save(HERE / "cpp_portrait.jpg", quality=92, subsampling=0, progressive=True)
    scene(150, 120, 5).convert("L").save(HERE / "cpp_gray.jpg", quality=90)


if __name__ == "__main__":
    main()
