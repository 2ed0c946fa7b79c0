"""What verification judges on: the one rule, for every command that verifies (export, split export, engine
build, ``verify``, ``debug-precision``).

First that applies:

1. ``--images DIR``: that folder, all of it (an explicit choice always wins);
2. ``--calib-images DIR`` (FP16/INT8): the images calibration did not read, the held-out part
   (imaging/inputs.py ``calibration_split``: the first ``--calib-count`` by file name calibrate, the rest judge).
   A folder with nothing left over is verified on synthetic scenes, with a note saying how to hold images out;
3. the inputs recorded when the artifact was made (``verify`` later, the engine built from an ONNX file), when
   their folder is still there; else synthetic scenes, with a note;
4. seeded synthetic scenes; FP16/INT8 with a note: a model trained on one domain can react to off-domain scenes
   after quantization quite differently from how it reacts to its own images (issue 25: an INT8 file refused on
   synthetic scenes that costs 0.0047 AP), so the judgement on real images is worth asking for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rtdetr_export.artifact import VerificationInputs
from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.imaging import list_images
from rtdetr_export.imaging.inputs import calibration_split

SYNTHETIC = VerificationInputs()


def held_out_inputs(folder: str | Path, calibration: int) -> VerificationInputs:
    """The part of ``folder`` that calibration on its first ``calibration`` images did not read; synthetic scenes
    when nothing is left (the caller says so, in its own words)."""
    used, held = calibration_split(folder, calibration)
    return VerificationInputs(str(folder), calibration, len(used) + len(held)) if held else SYNTHETIC


def choose_inputs(images: str | Path | None = None, calib_images: str | Path | None = None,
                  calib_count: int = DEFAULT_CALIBRATION_COUNT, recorded: VerificationInputs | None = None,
                  precision: str = "fp32", log: Callable[[str], None] = lambda message: None) -> VerificationInputs:
    """The inputs verification judges on, by the rule above; every note goes to ``log`` (one line each)."""
    if images is not None:
        return VerificationInputs(str(images), None, len(list_images(images)))
    if calib_images is not None:
        inputs = held_out_inputs(calib_images, calib_count)
        if inputs.synthetic:
            found = len(list_images(calib_images))
            log(f"note: {calib_images} has {found} images and calibration reads the first {calib_count} by file name, "
                f"so none is held out: verifying on synthetic scenes; add images to the folder, lower --calib-count, "
                f"or give --images DIR")
        return inputs
    if recorded is not None and not recorded.synthetic:
        try:
            found = len(list_images(recorded.folder))
        except RTDetrExportError:  # the folder is gone or emptied: judged like a folder that never was
            found = 0
        if found and recorded.calibration is None:
            return VerificationInputs(recorded.folder, None, found)
        if found > (recorded.calibration or 0):
            return held_out_inputs(recorded.folder, recorded.calibration)
        log(f"note: the images this artifact was verified on ({recorded}) are not there any more: verifying on "
            "synthetic scenes (--images DIR to judge on real images)")
        return SYNTHETIC
    if precision != "fp32":
        log(f"note: verifying {precision} on synthetic scenes (no image given); judge it on real images with "
            "--images DIR, or give --calib-images DIR and its held-out part verifies")
    return SYNTHETIC
