"""Labels are drawn inside the picture: above their box where there is room, else just inside it, and slid left or
right so that none runs past an edge (a box touching the right border used to have its label cut off)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from rtdetr_export.imaging import Detections
from rtdetr_export.imaging.annotate import annotate, class_colour, label_position

NAMES = ["a rather long class name"]
SIZE = (240, 160)  # width, height


def _drawn(box: list[float]) -> tuple[np.ndarray, tuple[int, int]]:
    """The annotated black picture and the label tag's (width, height), as annotate sizes it."""
    found = Detections(np.array([box], dtype=np.float32), np.array([0.87], dtype=np.float32),
                       np.array([0], dtype=np.int64))
    canvas = annotate(Image.new("RGB", SIZE), found, NAMES)
    left, top, right, bottom = ImageDraw.Draw(canvas).textbbox((0, 0), f"{NAMES[0]} 0.87",
                                                               font=ImageFont.load_default())
    return np.asarray(canvas), (right - left + 5, bottom - top + 5)


def _tag_columns(pixels: np.ndarray, row: int) -> np.ndarray:
    return np.flatnonzero((pixels[row] == class_colour(0)).all(-1))


def test_a_box_touching_the_right_border_keeps_its_whole_label_in_the_picture():
    pixels, (width, height) = _drawn([200, 80, 240, 150])
    columns = _tag_columns(pixels, 80 - height)  # the tag's top row (fill only, no text), above the box
    assert width > 40  # wider than the box: drawn from the box's left edge it would run off the picture
    assert columns.max() == SIZE[0] - 1 and columns.min() == SIZE[0] - width  # whole, flush with the edge
    assert len(columns) == width


def test_a_box_at_the_top_gets_its_label_inside_it():
    pixels, (width, height) = _drawn([20, 0, 120, 100])
    columns = _tag_columns(pixels, 0)  # the tag's top row, on the box's own top edge
    assert width > 100 and columns.min() == 20 and len(columns) == width
    assert label_position([20, 0, 120, 100], (width, height), SIZE) == (20, 0)


@pytest.mark.parametrize("box, expected", [
    ([50, 60, 90, 100], (50, 60 - 12)),                  # room above: on the box's top edge
    ([-10, 60, 30, 100], (0, 60 - 12)),                  # box starting left of the picture: slid right
    ([230, 5, 240, 40], (SIZE[0] - 100, 5)),             # no room above, at the right border: inside, slid left
    ([0, 155, 40, 160], (0, 155 - 12)),                  # at the bottom: above the box
])
def test_label_position_stays_inside_the_picture(box, expected):
    left, top = label_position(box, (100, 12), SIZE)
    assert (left, top) == expected
    assert 0 <= left <= SIZE[0] - 100 and 0 <= top <= SIZE[1] - 12
