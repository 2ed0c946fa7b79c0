"""Detections drawn on the original image: one coloured box and a "name score" tag per detection."""

from __future__ import annotations

import colorsys

from PIL import Image, ImageDraw, ImageFont

from rtdetr_export.imaging.postprocess import Detections

DISAGREE = (255, 0, 0)       # a detection the reference does not have (or has with another label)
REFERENCE_ONLY = (255, 255, 255)  # a reference detection the artifact missed, drawn dashed


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per class (golden-ratio hue steps), never pure red (kept for disagreements)."""
    hue = (0.08 + label * 0.618034) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple[int, int, int], width: int) -> None:
    x0, y0, x1, y1 = box
    dash = 6
    for a, b, horizontal, fixed in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0), (y0, y1, False, x1)):
        start = a
        while start < b:
            end = min(start + dash, b)
            points = [(start, fixed), (end, fixed)] if horizontal else [(fixed, start), (fixed, end)]
            draw.line(points, fill=colour, width=width)
            start += 2 * dash


def label_position(box: list[float], tag: tuple[float, float], image: tuple[int, int]) -> tuple[float, float]:
    """Top-left corner of a ``tag`` (width, height) for ``box`` (xyxy) inside an ``image`` (width, height): on the
    box's top edge, above it where there is room, else just inside it; slid left or right to stay in the picture
    (a box at the right border would otherwise have its label cut off)."""
    width, height = tag
    left = min(max(box[0], 0.0), max(image[0] - width, 0.0))
    top = box[1] - height if box[1] - height >= 0 else max(box[1], 0.0)
    return left, min(top, max(image[1] - height, 0.0))


def annotate(image: Image.Image, detections: Detections, class_names: list[str],
             disagreeing: set[int] | None = None, missed: Detections | None = None) -> Image.Image:
    """A copy of ``image`` with ``detections`` drawn; ``disagreeing`` indices in red, ``missed`` dashed white."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    width = max(2, round(max(canvas.size) / 300))
    disagreeing = disagreeing or set()
    for i in sorted(range(len(detections)), key=lambda i: detections.scores[i]):  # best drawn last, on top
        label = int(detections.labels[i])
        colour = DISAGREE if i in disagreeing else class_colour(label)
        box = [float(v) for v in detections.boxes[i]]
        draw.rectangle(box, outline=colour, width=width)
        name = class_names[label] if label < len(class_names) else str(label)
        text = f"{name} {float(detections.scores[i]):.2f}" + (" (not in reference)" if i in disagreeing else "")
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag = (right - left + 5, bottom - top + 5)  # pixels covered: the text and a 2-px margin
        tag_left, tag_top = label_position(box, tag, canvas.size)
        draw.rectangle([tag_left, tag_top, tag_left + tag[0] - 1, tag_top + tag[1] - 1], fill=colour)
        draw.text((tag_left + 2 - left, tag_top + 1 - top), text, fill=(0, 0, 0), font=font)
    if missed is not None:
        for box in missed.boxes:
            _dashed_rectangle(draw, [float(v) for v in box], REFERENCE_ONLY, width)
    return canvas
