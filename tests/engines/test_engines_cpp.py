"""The C++ engines (engines/): built with engines/build.sh, then held to the Python pipeline.

- pre-processing: PIL-exact bilinear resize (both pass orders, up/down, odd sizes), PNG decoding identical to
  PIL for every colour type and bit depth, JPEG decoding compared separately, and the model input tensor
  bit-identical to ``rtdetr_export.imaging.preprocess``;
- detections: ``rtdetr_detect --json`` on exports of the trained RT-DETRv2 and D-FINE fixtures (raw head, detections
  head, dynamic batch; the micro D-FINE in the fast tier) gives the same labels, scores within 1e-5 and boxes within
  1e-3 px as ``OnnxRuntimeRunner`` + ``postprocess``;
- Exif orientation: decoded JPEGs equal PIL's ``ImageOps.exif_transpose``; planted score ties are ordered as
  numpy's stable argsort orders them; older sidecars name their sampler as the exporter does;
- split artifacts: the C++ host step selects the cells, rows and detections the in-graph TopK does (50 seeded
  inputs with planted ties), ``rtdetr_detect`` on a split export equals the Python ``SplitRunner`` pipeline, and a
  missing graph or one from another export is one line, non-zero, nothing printed;
- user errors (missing or foreign files, no sidecar, damaged sidecars, bad images, bad options): one line on stderr,
  non-zero exit;
- fuzzing (slow): engines/fuzz.sh runs (30 s each; CI's set-up only builds the fuzzers, so this is CI's fuzzing) the file readers under libFuzzer + ASan/UBSan and finds nothing.

The build is cached in engines/build (git-ignored); only the first run compiles. Skips only when the toolchain is
missing (cmake, a C++ compiler, libpng/libjpeg headers), and never under CI, where that is a failure.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.imaging import load_image, postprocess, preprocess, preprocess_batch
from rtdetr_export.weights import load_model
from paths import ROOT, TESTS
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share the engines build check and three exports of
# the fixture (tools, exports).
pytestmark = pytest.mark.xdist_group("engines_cpp")

ENGINES = ROOT / "engines"
BUILD = Path(os.environ.get("RTDETR_ENGINES_BUILD", ENGINES / "build"))
IMAGES = ROOT / "tests" / "data" / "images"
CPP_IMAGES = sorted(p for p in IMAGES.glob("cpp_*") if p.suffix in (".png", ".jpg"))
# The trained fixture (tests/data/fixture/) finds real objects in its val images; the photos above exercise the
# decoders and odd sizes. Detections are compared on both.
FIXTURE = TESTS / "data" / "fixture"
DETECT_IMAGES = CPP_IMAGES + sorted((FIXTURE / "shapes_val" / "images").iterdir())[:3]

SCORE_TOL = 1e-5
BOX_TOL = 1e-3


@dataclass
class Tools:
    detect: Path
    image: Path
    host_step: Path


@pytest.fixture(scope="module")
def tools() -> Tools:
    env = dict(os.environ, RTDETR_ENGINES_BUILD=str(BUILD))
    check = subprocess.run(["bash", str(ENGINES / "build.sh"), "--check"], capture_output=True, text=True, env=env)
    if check.returncode == 3:
        reason = check.stderr.strip().splitlines()[-1]
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the C++ engines: {reason}")
        pytest.skip(reason)
    build = subprocess.run(["bash", str(ENGINES / "build.sh")], capture_output=True, text=True, env=env,
                           timeout=1200)
    assert build.returncode == 0, f"engines/build.sh failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return Tools(BUILD / "rtdetr_detect", BUILD / "rtdetr_image", BUILD / "rtdetr_host_step")


@pytest.fixture(scope="module")
@costly
def exports(tmp_path_factory) -> dict[str, Path]:
    """Exports of the trained fixture's discrete fine-tune: raw head, detections head, raw head, dynamic batch."""
    out = tmp_path_factory.mktemp("engines")
    model = load_model(FIXTURE / "rtdetrv2_shapes_dsp")
    # Only the first is simplified: the others cover graphs straight from torch.onnx and skip the slowest step.
    variants = {"raw": OnnxExportOptions(head="raw", verify=False),
                "detections": OnnxExportOptions(head="detections", top_k=100, simplify=False, verify=False),
                "raw_dynamic": OnnxExportOptions(head="raw", dynamic_batch=True, simplify=False, verify=False)}
    paths = {}
    for name, options in variants.items():
        paths[name] = export_onnx(model, out / f"tiny_{name}.onnx", options).path
    return paths


def run_tool(tool: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=300)


# -- pre-processing ------------------------------------------------------------------------------------------------
def cpp_decode(tools: Tools, path: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "decoded.rgb"
    result = run_tool(tools.image, "decode", path, out)
    assert result.returncode == 0, result.stderr
    width, height = map(int, result.stdout.split())
    return np.fromfile(out, np.uint8).reshape(height, width, 3)


def cpp_resize(tools: Tools, path: Path, size: tuple[int, int], tmp_path: Path) -> np.ndarray:
    width, height = size
    out = tmp_path / "resized.rgb"
    result = run_tool(tools.image, "resize", path, width, height, out)
    assert result.returncode == 0, result.stderr
    return np.fromfile(out, np.uint8).reshape(height, width, 3)


# (input width, height) -> [(output width, height)]: up- and downscaling, odd sizes, 1-pixel edges, one axis
# only, and both of Pillow's pass orders (vertical first when the height shrinks by > 2x the width's pixels).
RESIZE_CASES = {
    (211, 157): [(320, 320), (640, 640), (105, 78), (211, 100), (300, 157)],
    (640, 360): [(320, 320), (640, 640), (33, 17), (639, 361)],
    (180, 560): [(320, 320), (640, 640), (90, 100), (181, 3)],
    (1, 1): [(7, 5), (320, 320)],
    (3, 977): [(320, 320), (1, 1), (5, 2)],
    (977, 3): [(320, 320), (2, 5), (976, 1)],
    (1000, 750): [(320, 320), (640, 640), (999, 123)],
}


@pytest.mark.parametrize("source", list(RESIZE_CASES), ids=lambda s: f"{s[0]}x{s[1]}")
def test_bilinear_resize_is_bit_exact_with_pil(tools, tmp_path, source):
    width, height = source
    pixels = np.random.default_rng(width * 7919 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    # Noise plus a smooth ramp: noise exercises every weight, the ramp keeps values away from 0/255 clipping.
    ramp = (np.arange(width)[None, :, None] * 255 // max(width - 1, 1)).astype(np.uint8)
    pixels[: height // 2] = np.broadcast_to(ramp, (height, width, 3))[: height // 2]
    path = tmp_path / "in.png"
    Image.fromarray(pixels).save(path)
    for target in RESIZE_CASES[source]:
        want = np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BILINEAR))
        got = cpp_resize(tools, path, target, tmp_path)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() == 0, f"{source} -> {target}: {np.count_nonzero(diff)} values differ by up to {diff.max()}"


def write_png(path: Path, samples: np.ndarray, bit_depth: int, colour_type: int) -> None:
    """A PNG written sample by sample, for layouts PIL does not write (16-bit RGB/RGBA/LA, 2- and 4-bit grey)."""
    height, width = samples.shape[:2]
    rows = []
    for row in samples.reshape(height, width, -1):
        if bit_depth == 16:
            data = row.astype(">u2").tobytes()
        elif bit_depth == 8:
            data = row.astype(np.uint8).tobytes()
        else:
            per_byte = 8 // bit_depth
            flat = list(row.reshape(-1)) + [0] * (-len(row.reshape(-1)) % per_byte)
            data = bytes(sum(int(v) << (bit_depth * (per_byte - 1 - j)) for j, v in enumerate(flat[i:i + per_byte]))
                         for i in range(0, len(flat), per_byte))
        rows.append(b"\0" + data)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                     + chunk(b"IEND", b""))


def png_variants(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (23, 37, 4), dtype=np.uint8)
    made = {
        "rgb.png": lambda p: Image.fromarray(rgba[..., :3]).save(p),
        "rgba.png": lambda p: Image.fromarray(rgba, "RGBA").save(p),
        "grey.png": lambda p: Image.fromarray(rgba[..., 0]).save(p),
        "grey_alpha.png": lambda p: Image.fromarray(rgba[..., :2], "LA").save(p),
        "grey_trns.png": lambda p: Image.fromarray(rgba[..., 0]).save(p, transparency=7),
        "palette.png": lambda p: Image.fromarray(rgba[..., :3]).quantize(50).save(p),
        "palette_trns.png": lambda p: Image.fromarray(rgba[..., :3]).quantize(16).save(p, transparency=3),
        "bilevel.png": lambda p: Image.fromarray(rgba[..., 0] > 128).save(p),
        # PIL opens 16-bit grey as mode I;16, and its RGB conversion clips at 255 instead of scaling.
        "grey16.png": lambda p: Image.fromarray(rng.integers(0, 65536, (23, 37)).astype(np.uint16)).save(p),
        "grey16_low.png": lambda p: write_png(p, rng.integers(0, 300, (23, 37)), 16, 0),
        "rgb16.png": lambda p: write_png(p, rng.integers(0, 65536, (23, 37, 3)), 16, 2),
        "rgba16.png": lambda p: write_png(p, rng.integers(0, 65536, (23, 37, 4)), 16, 6),
        "grey_alpha16.png": lambda p: write_png(p, rng.integers(0, 65536, (23, 37, 2)), 16, 4),
        "grey2.png": lambda p: write_png(p, rng.integers(0, 4, (23, 37)), 2, 0),
        "grey4.png": lambda p: write_png(p, rng.integers(0, 16, (23, 37)), 4, 0),
    }
    paths = []
    for name, write in made.items():
        write(folder / name)
        paths.append(folder / name)
    return paths


def test_png_decoding_is_identical_to_pil(tools, tmp_path):
    paths = png_variants(tmp_path) + [p for p in sorted(IMAGES.glob("*.png"))]
    for path in paths:
        with Image.open(path) as image:
            want = np.asarray(image.convert("RGB"))
        got = cpp_decode(tools, path, tmp_path)
        assert got.shape == want.shape and np.array_equal(got, want), f"{path.name} decodes differently from PIL"


def jpeg_variants(folder: Path) -> list[Path]:
    y, x = np.mgrid[0:123, 0:201]
    smooth = Image.fromarray(np.stack([(x * 1.2) % 256, (y * 2) % 256, ((x + y) * 0.7) % 256], -1).astype(np.uint8))
    noise = Image.fromarray(np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    paths = []
    for name, image in (("smooth", smooth), ("noise", noise)):
        for subsampling in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
            for progressive in (False, True):
                path = folder / f"{name}_{subsampling}_{int(progressive)}.jpg"
                image.save(path, quality=85, subsampling=subsampling, progressive=progressive)
                paths.append(path)
        path = folder / f"{name}_grey.jpg"
        image.convert("L").save(path, quality=90)
        paths.append(path)
    return paths


def test_jpeg_decoding_agrees_with_pil(tools, tmp_path):
    """Debian's libjpeg-turbo 2.1 against the libjpeg-turbo 3.x inside Pillow's wheel.

    JPEG decoders may legally differ by +-1; with libjpeg's default settings on both sides (islow IDCT, fancy
    upsampling) these two agree exactly, on every subsampling mode, baseline and progressive, colour and grey.
    """
    paths = jpeg_variants(tmp_path) + sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    for path in paths:
        with Image.open(path) as image:
            if image.mode == "CMYK":
                continue  # refused by the engines (documented); see test_user_errors_are_one_line
            want = np.asarray(image.convert("RGB"))
        got = cpp_decode(tools, path, tmp_path)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert got.shape == want.shape and diff.max() == 0, \
            f"{path.name}: {np.count_nonzero(diff.any(-1))} pixels differ from PIL by up to {diff.max()}"


# -- Exif orientation ----------------------------------------------------------------------------------------------
def tiff_block(entries: list[tuple[int, int, int, bytes]], big_endian: bool = False, tail: bytes = b"",
               magic: bytes | None = None) -> bytes:
    """An Exif TIFF block: header, IFD0 with (tag, type, count, 4-byte field) entries, then ``tail`` (offset
    26 + 12 * (len(entries) - 1) from the header) for values stored out of line."""
    e = ">" if big_endian else "<"
    head = magic or (b"MM\0*" if big_endian else b"II*\0")
    block = head + struct.pack(e + "IH", 8, len(entries))
    for tag, type_, count, field in entries:
        block += struct.pack(e + "HHI", tag, type_, count) + field
    return block + struct.pack(e + "I", 0) + tail


def short_field(value: int, big_endian: bool = False) -> bytes:
    return struct.pack((">" if big_endian else "<") + "HH", value, 0)


def with_app1(jpeg: bytes, *payloads: bytes) -> bytes:
    """The JPEG with APP1 segments inserted after SOI."""
    return jpeg[:2] + b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads) + jpeg[2:]


def exif_variants(folder: Path) -> dict[str, Path]:
    """JPEGs whose orientation comes from Exif or XMP, written every way PIL reads (and some it cannot)."""
    rng = np.random.default_rng(26)
    stored = Image.fromarray(rng.integers(0, 256, (21, 34, 3), dtype=np.uint8))
    plain = io.BytesIO()
    stored.save(plain, "JPEG", quality=90)
    plain = plain.getvalue()
    orientation = 0x0112
    out_of_line = struct.pack("<HHHH", 3, 1, 1, 1)  # SHORT x 4 at offset 26: the first value counts
    xmp = b'http://ns.adobe.com/xap/1.0/\0<rdf:Description tiff:Orientation="%d"/>'
    made: dict[str, bytes] = {}
    for value in range(1, 10):
        exif = Image.Exif()
        exif[orientation] = value
        out = io.BytesIO()
        stored.save(out, "JPEG", quality=90, exif=exif.tobytes())  # how cameras and PIL write it (little-endian)
        made[f"pil_{value}"] = out.getvalue()
    for value in (6, 8, 5, 7):
        made[f"big_endian_{value}"] = with_app1(plain, b"Exif\0\0" + tiff_block(
            [(orientation, 3, 1, short_field(value, True))], big_endian=True))
    made |= {
        "long_type": with_app1(plain, b"Exif\0\0" + tiff_block([(orientation, 4, 1, struct.pack("<I", 6))])),
        "rational": with_app1(plain, b"Exif\0\0" + tiff_block([(orientation, 5, 1, struct.pack("<I", 26))],
                                                              tail=struct.pack("<II", 16, 2))),
        "byte_type": with_app1(plain, b"Exif\0\0" + tiff_block([(orientation, 1, 1, b"\x06\0\0\0")])),
        "out_of_line": with_app1(plain, b"Exif\0\0" + tiff_block([(orientation, 3, 4, struct.pack("<I", 26))],
                                                                 tail=out_of_line)),
        "first_entry_wins": with_app1(plain, b"Exif\0\0" + tiff_block(
            [(orientation, 3, 1, short_field(6)), (orientation, 3, 1, short_field(8))])),
        # Values read out of line may not add up to more than the block: a 40-byte Make at offset 0 leaves no
        # room in this 46-byte block for the 8-byte orientation after it, so PIL skips that entry.
        "out_of_line_budget": with_app1(plain, b"Exif\0\0" + tiff_block(
            [(0x010F, 2, 40, struct.pack("<I", 0)), (orientation, 3, 4, struct.pack("<I", 38))], tail=out_of_line)),
        "unknown_type_skipped": with_app1(plain, b"Exif\0\0" + tiff_block(
            [(orientation, 3, 1, short_field(6)), (orientation, 99, 1, short_field(8))])),
        "split_segments": with_app1(plain, b"Exif\0\0" + tiff_block([(orientation, 3, 1, short_field(3))])[:11],
                                    b"Exif\0\0" + tiff_block([(orientation, 3, 1, short_field(3))])[11:]),
        "double_prefix": with_app1(plain, b"Exif\0\0Exif\0\0" + tiff_block([(orientation, 3, 1, short_field(2))])),
        "xmp_only": with_app1(plain, xmp % 8),
        "exif_before_xmp": with_app1(plain, b"Exif\0\0" + tiff_block([(orientation, 3, 1, short_field(6))]), xmp % 8),
        # Malformed blocks: an orientation PIL can still read, then ones it cannot (PIL raises, we read 1).
        "truncated_directory": with_app1(plain, b"Exif\0\0" + tiff_block(
            [(orientation, 3, 1, short_field(7)), (orientation, 3, 1, short_field(2))])[:30]),
        "value_offset_past_end": with_app1(plain, b"Exif\0\0" + tiff_block(
            [(orientation, 3, 1, short_field(6)), (orientation, 3, 4, struct.pack("<I", 4000))])),
        "directory_past_end": with_app1(plain, b"Exif\0\0II*\0" + struct.pack("<I", 9999)),
        "not_tiff": with_app1(plain, b"Exif\0\0XX*\0" + tiff_block([(orientation, 3, 1, short_field(6))])[4:]),
        "empty_exif": with_app1(plain, b"Exif\0\0"),
    }
    paths = {}
    for name, data in made.items():
        paths[name] = folder / f"exif_{name}.jpg"
        paths[name].write_bytes(data)
    return paths


def pil_upright(path: Path) -> np.ndarray | None:
    """PIL's exif_transpose of the file, or None where PIL cannot read its metadata."""
    with Image.open(path) as image:
        try:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        except (SyntaxError, OSError, struct.error):
            return None


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # PIL on the odd blocks it reads
def test_exif_orientation_gives_the_pixels_of_pil_exif_transpose(tools, tmp_path):
    """Orientations 1-8 (and 9, no orientation), both byte orders, every numeric type, out-of-line values, split
    segments and XMP: the decoded image equals PIL's ImageOps.exif_transpose(Image.open(...)) bit for bit. A block
    PIL cannot parse (it raises) leaves the image as stored, never an error."""
    rotated = 0
    for name, path in exif_variants(tmp_path).items():
        got = cpp_decode(tools, path, tmp_path)
        with Image.open(path) as image:
            stored = np.asarray(image.convert("RGB"))
        want = pil_upright(path)
        if want is None:
            assert name in ("directory_past_end", "not_tiff", "empty_exif"), f"{name}: PIL cannot read it"
            want = stored
        assert got.shape == want.shape and np.array_equal(got, want), f"{name}: not PIL's exif_transpose"
        rotated += got.shape != stored.shape or not np.array_equal(got, stored)
    assert rotated >= 20, "most variants carry an orientation that moves pixels"


def test_rotated_jpeg_gives_the_detections_of_its_upright_pixels(tools, tmp_path):
    """A photo stored turned (orientation 6 and 8) detects exactly as PIL's upright pixels of it do, at the upright
    size: what the C++ tool reads equals what exif_transpose gives, so the model sees the same input."""
    model = ROOT / "tests" / "data" / "schema_examples" / "micro_raw_v1.onnx"
    with Image.open(IMAGES / "cpp_street.jpg") as photo:
        upright = photo.convert("RGB")
    for value, turn in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        exif = Image.Exif()
        exif[0x0112] = value
        turned = tmp_path / f"turned_{value}.jpg"
        upright.transpose(turn).save(turned, quality=92, exif=exif.tobytes())
        reference = tmp_path / f"upright_{value}.png"
        with Image.open(turned) as image:
            ImageOps.exif_transpose(image).convert("RGB").save(reference)
        assert Image.open(reference).size == upright.size
        got, want = (cpp_detections(tools, model, [path], 0.0)["images"][0] for path in (turned, reference))
        assert (got["width"], got["height"]) == upright.size == (want["width"], want["height"])
        assert got["detections"] == want["detections"] and len(want["detections"]) > 0


@pytest.mark.parametrize("size", [(320, 320), (480, 640), (123, 77)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_model_input_is_bit_identical_to_python_preprocess(tools, tmp_path, size):
    height, width = size
    for path in CPP_IMAGES:
        want = preprocess(load_image(path), size)
        out = tmp_path / "input.f32"
        result = run_tool(tools.image, "preprocess", path, height, width, out)
        assert result.returncode == 0, result.stderr
        got = np.fromfile(out, np.float32).reshape(want.shape)
        assert np.array_equal(got, want), f"{path.name} at {size}: {np.count_nonzero(got != want)} values differ"


# -- detections ----------------------------------------------------------------------------------------------------
def python_detections(onnx_path: Path, paths: list[Path], threshold: float, batch: int = 1,
                      size: tuple[int, int] | None = None) -> list[list[dict]]:
    """load_image, preprocess, OnnxRuntimeRunner, then postprocess (raw head) or the threshold (detections head);
    at the sidecar's input size unless ``size`` is given (a dynamic-size file)."""
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    size, head, classes = size or tuple(sidecar["input_size"]), sidecar["export"]["head"], sidecar["classes"]
    results = []
    with OnnxRuntimeRunner(onnx_path) as runner:
        for start in range(0, len(paths), batch):
            images = [load_image(p) for p in paths[start:start + batch]]
            feed = {"images": preprocess_batch(images, size)}
            if head == "raw":
                out = runner.infer(feed)
                found = postprocess(out["logits"], out["pred_boxes"], [(im.height, im.width) for im in images],
                                    threshold=threshold)
                results += [d.to_list(classes) for d in found]
            else:
                feed["orig_target_sizes"] = np.array([[im.width, im.height] for im in images], dtype=np.int64)
                out = runner.infer(feed)
                for labels, boxes, scores in zip(out["labels"], out["boxes"], out["scores"]):
                    keep = scores.astype(np.float64) > threshold
                    results.append([{"label": int(l), "name": classes[int(l)], "score": float(s),
                                     "box": [float(v) for v in b]}
                                    for l, b, s in zip(labels[keep], boxes[keep], scores[keep])])
    return results


def cpp_detections(tools: Tools, onnx_path: Path, paths: list[Path], threshold: float, *extra: str) -> dict:
    result = run_tool(tools.detect, onnx_path, *paths, "--threshold", repr(threshold), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def compare(cpp: list[dict], python: list[dict], where: str) -> tuple[float, float]:
    """Asserts the contract's equality and returns the largest score and box differences."""
    assert [d["label"] for d in cpp] == [d["label"] for d in python], f"{where}: labels differ"
    assert [d["name"] for d in cpp] == [d["name"] for d in python], f"{where}: class names differ"
    if not python:
        return 0.0, 0.0
    # Both sides are float32 values; JSON carries the shortest text that reads back as the same float32.
    score = float(np.max(np.abs(np.float32([d["score"] for d in cpp]) - np.float32([d["score"] for d in python]))))
    box = float(np.max(np.abs(np.float32([d["box"] for d in cpp]) - np.float32([d["box"] for d in python]))))
    assert score <= SCORE_TOL, f"{where}: scores differ by {score:.3g}"
    assert box <= BOX_TOL, f"{where}: boxes differ by {box:.3g} px"
    return score, box


def thresholds_for(python_all: list[list[dict]]) -> list[float]:
    """The CLI default, plus one that cuts the first image's list midway between two distinct scores."""
    scores = sorted({d["score"] for d in python_all[0]}, reverse=True)
    middle = len(scores) // 2
    return [0.5, (scores[middle - 1] + scores[middle]) / 2] if len(scores) > 2 else [0.5]


def assert_detections_equal(tools: Tools, onnx_path: Path, head: str, images: list[Path] = DETECT_IMAGES) -> int:
    """rtdetr_detect on ``images`` equals the Python pipeline at each of thresholds_for's thresholds; returns how
    many detections were compared."""
    compared = 0
    for threshold in thresholds_for(python_detections(onnx_path, images, 0.0)):
        want = python_detections(onnx_path, images, threshold)
        got = cpp_detections(tools, onnx_path, images, threshold)
        assert got["backend"] == "onnxruntime" and got["head"] == head
        assert got["sampler"] == json.loads(onnx_path.with_suffix(".json").read_text())["sampler"]
        assert [Path(i["image"]) for i in got["images"]] == images and len(want) == len(images)
        for path, cpp_image, python_image in zip(images, got["images"], want):
            with Image.open(path) as image:
                assert (cpp_image["width"], cpp_image["height"]) == image.size
            compare(cpp_image["detections"], python_image, f"{head} {path.name} threshold {threshold:.6g}")
            compared += len(python_image)
    return compared


@pytest.mark.parametrize("head", ["raw", "detections"])
def test_detections_equal_the_python_pipeline(tools, exports, head):
    assert assert_detections_equal(tools, exports[head], head) > 0, "the comparison needs detections to compare"


def test_dynamic_batch_runs_in_chunks_like_the_python_pipeline(tools, exports):
    """--batch 2 on seven images: runs of 2, 2, 2 and 1, compared with the Python pipeline batched the same way."""
    onnx_path, images = exports["raw_dynamic"], DETECT_IMAGES[:7]
    want = python_detections(onnx_path, images, 0.5, batch=2)
    got = cpp_detections(tools, onnx_path, images, 0.5, "--batch", "2")
    assert len(got["images"]) == len(want) == len(images)
    for path, cpp_image, python_image in zip(images, got["images"], want):
        compare(cpp_image["detections"], python_image, f"dynamic {path.name}")


# -- D-FINE: the same file contract (sidecar, raw or detections head), so the same sample runs it --------------------
@pytest.fixture(scope="module")
@costly
def dfine_exports(tmp_path_factory) -> dict[str, Path]:
    """Exports of the trained D-FINE fixture (tests/data/fixture/dfine_shapes): detections head, raw head."""
    out = tmp_path_factory.mktemp("engines_dfine")
    model = load_model(FIXTURE / "dfine_shapes")
    variants = {"detections": OnnxExportOptions(head="detections", top_k=100, simplify=False, verify=False),
                "raw": OnnxExportOptions(head="raw", simplify=False, verify=False)}
    return {name: export_onnx(model, out / f"dfine_{name}.onnx", options).path for name, options in variants.items()}


@pytest.mark.parametrize("head", ["detections", "raw"])
def test_d_fine_detections_equal_the_python_pipeline(tools, dfine_exports, head):
    assert json.loads(dfine_exports[head].with_suffix(".json").read_text())["model"]["family"] == "dfine"
    assert assert_detections_equal(tools, dfine_exports[head], head) > 0, "the comparison needs detections"


def test_a_micro_d_fine_file_runs_in_batches_like_the_python_pipeline(tools, micro_dfine_fp32):
    """The fast tier's D-FINE check: the micro D-FINE (raw head, dynamic batch), --batch 2 on five images."""
    images = DETECT_IMAGES[:5]
    want = python_detections(micro_dfine_fp32, images, 0.0, batch=2)
    got = cpp_detections(tools, micro_dfine_fp32, images, 0.0, "--batch", "2")
    assert len(got["images"]) == len(want) == len(images) and sum(map(len, want)) > 0
    for path, cpp_image, python_image in zip(images, got["images"], want):
        compare(cpp_image["detections"], python_image, f"micro D-FINE {path.name}")


@pytest.fixture(scope="module")
@costly
def dynamic_export(tmp_path_factory) -> Path:
    """The fixture's discrete fine-tune as a dynamic-size file: 256x256..480x640, opt its own 320x320."""
    from rtdetr_export.model import SizeRange

    model = load_model(FIXTURE / "rtdetrv2_shapes_dsp")
    options = OnnxExportOptions(head="raw", dynamic_batch=True, verify=False,
                                size_range=SizeRange((256, 256), (320, 320), (480, 640)))
    return export_onnx(model, tmp_path_factory.mktemp("engines_dynamic") / "tiny_dynamic.onnx", options).path


def test_a_dynamic_size_file_runs_at_its_opt_size_or_the_size_asked_for(tools, dynamic_export):
    """The sample reads input_size_range: the opt size by default, --size HxW within the range, and a size
    outside it is one error line naming the range."""
    images = DETECT_IMAGES[-3:]
    for size, extra in (((320, 320), ()), ((480, 640), ("--size", "480x640")), ((256, 384), ("--size", "256x384"))):
        want = python_detections(dynamic_export, images, 0.3, size=size)
        got = cpp_detections(tools, dynamic_export, images, 0.3, *extra)
        assert got["input_size"] == list(size)
        for path, cpp_image, python_image in zip(images, got["images"], want):
            compare(cpp_image["detections"], python_image, f"dynamic-size {path.name} at {size}")
    assert_one_line_error(run_tool(tools.detect, dynamic_export, images[0], "--size", "640x640"),
                          "image size 640x640 is outside the model's range 256x256..480x640 (opt 320x320)")
    assert_one_line_error(run_tool(tools.detect, dynamic_export, images[0], "--size", "300"), "multiples of 32")


def constant_raw_model(folder: Path, logits: np.ndarray, boxes: np.ndarray) -> Path:
    """A raw-head ONNX graph whose outputs are the given constants (its image input goes unused), with a schema-4
    sidecar: the C++ post-processing then runs on exactly the logits planted."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    q, c = logits.shape[1:]
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
             for name, value in (("logits", logits), ("pred_boxes", boxes))]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, q, c]),
         helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, [1, q, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "constant.onnx"
    onnx.save(model, path)
    tensor = lambda name, shape: {"name": name, "shape": shape, "dtype": "float32"}  # noqa: E731
    path.with_suffix(".json").write_text(json.dumps({
        "format": "rtdetr-export/onnx", "schema_version": 4, "method": "discrete", "sampler": "gather-nearest",
        "input_size": [32, 32], "input_size_range": None, "classes": [f"class{i}" for i in range(c)],
        "precision": "fp32", "export": {"head": "raw", "top_k": None},
        "io": {"inputs": [tensor("images", [1, 3, 32, 32])],
               "outputs": [tensor("logits", [1, q, c]), tensor("pred_boxes", [1, q, 4])]}}))
    return path


def test_equal_scores_keep_the_lower_index_first_as_numpy_stable_argsort(tools, tmp_path):
    """Planted exact ties: 200 candidates drawn from five logits, so every score repeats; 40 and 45 both give a
    sigmoid of exactly 1.0 in double, so unequal logits tie too. The C++ top-k picks and orders them as
    postprocess() does with numpy's stable argsort (lower flat index first), including where K cuts a tie."""
    rng = np.random.default_rng(11)
    q, c = 40, 5
    logits = rng.choice(np.float32([-1.0, 0.5, 2.0, 40.0, 45.0]), size=(1, q, c))
    centres = (np.arange(q, dtype=np.float32) + 1) / (q + 2)  # a distinct box per query: (label, box) names a candidate
    boxes = np.stack([centres, centres[::-1], np.full(q, 0.1), np.full(q, 0.2)], -1)[None].astype(np.float32)
    model = constant_raw_model(tmp_path, logits, boxes)
    image = IMAGES / "cpp_palette.png"
    with Image.open(image) as opened:
        width, height = opened.size
    scores = np.sort(1.0 / (1.0 + np.exp(-logits.astype(np.float64).ravel())))[::-1]
    for top_k in (7, q, q * c):
        if top_k < q * c:
            assert scores[top_k - 1] == scores[top_k], "the test needs K to cut a group of equal scores"
        want = postprocess(logits, boxes, [(height, width)], threshold=0.0, top_k=top_k)[0].to_list(
            [f"class{i}" for i in range(c)])
        got = cpp_detections(tools, model, [image], 0.0, "--top-k", str(top_k))["images"][0]["detections"]
        assert len(got) == len(want) == top_k
        # The JSON holds float32 values (C++: shortest text; Python: the float32 widened): compare as float32.
        assert [d["label"] for d in got] == [d["label"] for d in want], f"top-k {top_k}: labels"
        for key in ("box", "score"):
            assert np.array_equal(np.float32([d[key] for d in got]), np.float32([d[key] for d in want])), key
        assert len({d["score"] for d in want}) < top_k, "ties among the kept candidates"


def test_text_output_lists_every_detection(tools, exports):
    path = DETECT_IMAGES[-3]  # the first val image: the fixture finds its shapes there (7 at 0.5)
    as_json = cpp_detections(tools, exports["detections"], [path], 0.5)["images"][0]["detections"]
    result = run_tool(tools.detect, exports["detections"], path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    with Image.open(path) as image:
        count = f"{len(as_json)} detection{'' if len(as_json) == 1 else 's'}"
        assert lines[0] == f"{path} ({image.width}x{image.height}): {count}"
    assert [line.split()[1] for line in lines[1:]] == [d["name"].split()[0] for d in as_json]
    assert as_json, "the trained fixture detects the shapes of its val images"



# -- sidecars ------------------------------------------------------------------------------------------------------
MICRO = ROOT / "tests" / "data" / "schema_examples" / "micro_raw_v1.onnx"  # a real schema-1 export and its sidecar


def micro_with_sidecar(folder: Path, edit) -> Path:
    """A copy of the schema-1 micro export whose sidecar ``edit(record)`` changed (or replaced, if it returns)."""
    record = json.loads(MICRO.with_suffix(".json").read_text())
    record = edit(record) or record
    model = folder / "micro.onnx"
    shutil.copy(MICRO, model)
    sidecar = model.with_suffix(".json")
    if isinstance(record, bytes):
        sidecar.write_bytes(record)
    else:
        sidecar.write_text(record if isinstance(record, str) else json.dumps(record))
    return model


@pytest.mark.parametrize(("method", "bilinear_op"), [("default", "gather"), ("default", "gridsample"),
                                                     ("default", None), ("discrete", None)])
def test_an_older_sidecar_without_sampler_derives_it_from_method_and_bilinear_op(tools, tmp_path, method,
                                                                                  bilinear_op):
    """Schema 1-3 sidecars may lack "sampler"; a "default" file written with export.bilinear_op "gather" samples
    with Gather, not GridSample. The expected name is the Python record reader's own (artifact.records.sampler_of)."""
    from rtdetr_export.artifact.records import sampler_of

    def edit(record):
        record.update(schema_version=3, method=method)
        record.pop("sampler", None)
        record["export"].pop("bilinear_op", None)
        if bilinear_op:
            record["export"]["bilinear_op"] = bilinear_op

    got = cpp_detections(tools, micro_with_sidecar(tmp_path, edit), [CPP_IMAGES[0]], 0.5)
    assert got["sampler"] == sampler_of({"method": method, "export": {"bilinear_op": bilinear_op}}, "old").value


def test_sidecar_schemas_1_to_4_are_read_and_newer_ones_refused(tools, tmp_path):
    for version in (1, 2, 3, 4):
        def edit(record, version=version):
            record.update(schema_version=version, sampler="gridsample-bilinear")
        got = cpp_detections(tools, micro_with_sidecar(tmp_path, edit), [CPP_IMAGES[0]], 0.5)
        assert got["sampler"] == "gridsample-bilinear"
    newer = micro_with_sidecar(tmp_path, lambda r: r.update(schema_version=5))
    assert_one_line_error(run_tool(tools.detect, newer, CPP_IMAGES[0]), "micro.json",
                          "sidecar schema version 5 is newer than these engines read (1-4)")
    no_sampler = micro_with_sidecar(tmp_path, lambda r: r.update(schema_version=4))
    assert_one_line_error(run_tool(tools.detect, no_sampler, CPP_IMAGES[0]), "sampler is missing")


def test_any_damaged_sidecar_is_a_one_line_error(tools, tmp_path):
    """Wrong types, out-of-range numbers, other JSON documents and truncation: each is one line naming the file."""
    text = MICRO.with_suffix(".json").read_text()
    cases = {
        "input_size": (lambda r: r.update(input_size="320"), "input_size should be an array, found a string"),
        "input_size_item": (lambda r: r.update(input_size=[320, 1.5]), "input_size should be an integer"),
        "input_size_huge": (lambda r: r.update(input_size=[1e300, 320]), "input_size out of range"),
        "classes": (lambda r: r.update(classes={"0": "a"}), "classes should be an array, found an object"),
        "class_name": (lambda r: r.update(classes=[1, 2, 3, 4]), "class name should be a string, found a number"),
        "head": (lambda r: r["export"].update(head=None), "export.head should be a string, found null"),
        "top_k": (lambda r: r["export"].update(top_k=-3), "export.top_k out of range"),
        "io_entry": (lambda r: r["io"].update(inputs=[7]), "io.inputs entries need name, shape and dtype"),
        "dimension": (lambda r: r["io"]["inputs"][0].update(shape=["batch", 3, 2**40, 128]), "io dimension out of range"),
        "schema": (lambda r: r.update(schema_version="3"), "schema_version should be an integer, found a string"),
        "sampler": (lambda r: r.update(sampler="bi\ncubic"), 'unknown sampler "bi\\x0acubic"'),
        "bilinear_op": (lambda r: r["export"].update(bilinear_op=3), "export.bilinear_op should be a string"),
        "array": (lambda r: "[1, 2]", "not an rtdetr-export sidecar"),
        "number": (lambda r: "1e999", "not a readable sidecar"),
        "truncated": (lambda r: text[: len(text) // 2], "not a readable sidecar"),
        "not_utf8": (lambda r: text.encode().replace(b'"created": "', b'"created": "\xff', 1),
                     "not a readable sidecar"),
    }
    for name, (edit, message) in cases.items():
        result = run_tool(tools.detect, micro_with_sidecar(tmp_path, edit), CPP_IMAGES[0])
        assert_one_line_error(result, "micro.json", message)



# -- split artifacts -----------------------------------------------------------------------------------------------
def selection_graph(path: Path, k: int) -> Path:
    """The single graph's query selection alone (model/query_selection.py traced: ReduceMax, TopK, GatherElements),
    for ONNX Runtime to select with: the in-graph version the host step replaces."""
    import onnx
    import torch

    from rtdetr_export.export.torch_export import trace_to_onnx
    from rtdetr_export.model.query_selection import gather_rows, select_topk

    class Selection(torch.nn.Module):
        def forward(self, cell_logits, cell_targets, cell_box_logits):
            index = select_topk(cell_logits, k)
            return index, gather_rows(cell_targets, index), gather_rows(cell_box_logits, index)

    inputs = (torch.zeros(2, 336, 4), torch.zeros(2, 336, 32), torch.zeros(2, 336, 4))
    graph = trace_to_onnx(Selection(), inputs, ["cell_logits", "cell_targets", "cell_box_logits"],
                          ["index", "query_targets", "reference_logits"], 17, dynamic_batch=True)
    assert {"TopK", "GatherElements"} <= {node.op_type for node in graph.graph.node}
    onnx.save(graph, str(path))
    return path


def cells_with_ties(seed: int, k: int) -> dict[str, np.ndarray]:
    """Seeded graph-1 outputs (batch 2, 336 cells, 4 classes, 32 channels) whose best class scores tie exactly at
    and around the top-k boundary, and every fifth seed on a coarse grid where ties are everywhere."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 336, 4)).astype(np.float32)
    if seed % 5 == 0:
        logits = np.round(logits * 2) / 2
    for b in range(2):
        tie = np.sort(logits[b].max(-1))[::-1][k - 1]  # the score of the last cell kept
        cells = rng.choice(336, size=int(rng.integers(2, 8)), replace=False)
        logits[b, cells] = np.minimum(logits[b, cells], tie)
        logits[b, cells, rng.integers(0, 4, size=len(cells))] = tie
    return {"cell_logits": logits, "cell_targets": rng.normal(size=(2, 336, 32)).astype(np.float32),
            "cell_box_logits": rng.normal(size=(2, 336, 4)).astype(np.float32)}


def cpp_select(tools: Tools, cells: dict[str, np.ndarray], k: int, folder: Path) -> dict[str, np.ndarray]:
    b, n, c = cells["cell_logits"].shape
    d = cells["cell_targets"].shape[-1]
    names = ("cell_logits", "cell_targets", "cell_box_logits")
    for name in names:
        cells[name].tofile(folder / f"{name}.f32")
    result = run_tool(tools.host_step, "select", b, n, c, d, k, *(folder / f"{name}.f32" for name in names), folder)
    assert result.returncode == 0, result.stderr
    return {"index": np.fromfile(folder / "index.i64", np.int64).reshape(b, k),
            "query_targets": np.fromfile(folder / "query_targets.f32", np.float32).reshape(b, k, d),
            "reference_logits": np.fromfile(folder / "reference_logits.f32", np.float32).reshape(b, k, 4)}


def test_cpp_host_step_selects_what_the_graphs_topk_selects_with_planted_ties(tools, tmp_path):
    """50 seeded inputs with exact ties across the top-k boundary: the C++ query selection gives the indices and
    rows that the single graph's TopK + GatherElements give on ONNX Runtime, and that the PyTorch model's
    selection (eager: a stable descending sort) gives; the numpy host step agrees too."""
    import onnxruntime as ort
    import torch

    from rtdetr_export.imaging.host_step import select_cells, select_queries
    from rtdetr_export.model.query_selection import select_topk

    k = 30
    session = ort.InferenceSession(str(selection_graph(tmp_path / "selection.onnx", k)))
    boundary_ties = 0
    for seed in range(50):
        cells = cells_with_ties(seed, k)
        index, targets, boxes = session.run(None, cells)
        got = cpp_select(tools, cells, k, tmp_path)
        np.testing.assert_array_equal(got["index"], index, err_msg=f"seed {seed}: indices")
        np.testing.assert_array_equal(got["query_targets"], targets, err_msg=f"seed {seed}: query_targets")
        np.testing.assert_array_equal(got["reference_logits"], boxes, err_msg=f"seed {seed}: reference_logits")
        np.testing.assert_array_equal(got["index"], select_topk(torch.from_numpy(cells["cell_logits"]), k).numpy())
        host = select_queries(dict(cells, memory=np.zeros((2, 1, 1), np.float32)), k)
        np.testing.assert_array_equal(got["index"], select_cells(cells, k))
        np.testing.assert_array_equal(got["query_targets"], host["query_targets"])
        scores = cells["cell_logits"].max(-1)
        kth = np.take_along_axis(scores, index[:, -1:], axis=1)
        left_out = np.ones_like(scores, dtype=bool)
        np.put_along_axis(left_out, index, False, axis=1)
        boundary_ties += int(((scores == kth) & left_out).any(1).sum())
    assert boundary_ties >= 50, "the planted ties straddle the boundary in most of the 100 images"


def test_cpp_host_step_detections_equal_the_detections_head_with_ties(tools, tmp_path):
    """The detections head's top-k on the host: logits drawn from five values, so scores repeat everywhere (40 and
    45 both give a probability of exactly 1.0), and K cuts a group of equal scores. The C++ labels and their order
    equal the PyTorch DetectionsHead's (eager: a stable sort, ONNX TopK's rule), scores and boxes within the
    limits tests/export/test_split_export.py holds the numpy host step to; the numpy host step is matched exactly."""
    import torch

    from rtdetr_export.imaging.host_step import top_detections
    from rtdetr_export.model.heads import DetectionsHead

    b, q, c, k = 3, 30, 4, 50
    cut_ties = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        logits = rng.choice(np.float32([-1.0, 0.5, 2.0, 40.0, 45.0]), size=(b, q, c))
        boxes = rng.random((b, q, 4), dtype=np.float32)
        sizes = np.array([[640, 480], [128, 128], [1280, 720]], dtype=np.int64)

        class Raw(torch.nn.Module):
            def forward(self, images):
                return torch.from_numpy(logits), torch.from_numpy(boxes)

        labels, picked, scores = (t.numpy() for t in DetectionsHead(Raw(), k)(torch.zeros(1), torch.from_numpy(sizes)))
        logits.tofile(tmp_path / "logits.f32")
        boxes.tofile(tmp_path / "pred_boxes.f32")
        sizes.tofile(tmp_path / "sizes.i64")
        result = run_tool(tools.host_step, "detect", b, q, c, k, tmp_path / "logits.f32", tmp_path / "pred_boxes.f32",
                          tmp_path / "sizes.i64", tmp_path)
        assert result.returncode == 0, result.stderr
        got = {"labels": np.fromfile(tmp_path / "labels.i64", np.int64).reshape(b, k),
               "boxes": np.fromfile(tmp_path / "boxes.f32", np.float32).reshape(b, k, 4),
               "scores": np.fromfile(tmp_path / "scores.f32", np.float32).reshape(b, k)}
        probs = np.sort(1.0 / (1.0 + np.exp(-logits.reshape(b, -1).astype(np.float64))), axis=1)[:, ::-1]
        cut_ties += int((probs[:, k - 1] == probs[:, k]).sum())
        np.testing.assert_array_equal(got["labels"], labels, err_msg=f"seed {seed}: labels")
        np.testing.assert_allclose(got["scores"], scores, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got["boxes"], picked, rtol=0, atol=1e-3)  # pixels, float32 at 1280
        host = top_detections(logits, boxes, sizes, k)
        for name in ("labels", "boxes", "scores"):
            np.testing.assert_array_equal(got[name], host[name], err_msg=f"seed {seed}: {name} (numpy host step)")
    assert cut_ties >= 20, "K cuts a group of equal scores in most of the 30 images"


@pytest.fixture(scope="module")
@costly
def split_exports(tmp_path_factory) -> dict[str, Path]:
    """The fixture's discrete fine-tune as split artifacts: raw head with a dynamic batch, and the detections head
    (top-k 100); each maps to its sidecar. Both are named split.onnx (in their own folders), so each graph's metadata
    names the sidecar split.json, as two exports of one name do. Verification is tests/export's, not repeated here."""
    from rtdetr_export.pipeline import export_split

    out = tmp_path_factory.mktemp("engines_split")
    model = load_model(FIXTURE / "rtdetrv2_shapes_dsp")
    variants = {"raw": OnnxExportOptions(head="raw", dynamic_batch=True, verify=False),
                "detections": OnnxExportOptions(head="detections", top_k=100, simplify=False, verify=False)}
    sidecars = {}
    for name, options in variants.items():
        (out / name).mkdir()
        sidecars[name] = export_split(model, out / name / "split.onnx", options).sidecar
    return sidecars


def python_split_detections(sidecar: Path, paths: list[Path], threshold: float, batch: int = 1) -> list[list[dict]]:
    """load_image, preprocess, the Python SplitRunner (graph 1, numpy host step, graph 2), then postprocess (raw
    head) or the threshold (detections head)."""
    from rtdetr_export.artifact import open_artifact
    from rtdetr_export.backends.split_runner import SplitRunner

    record = open_artifact(sidecar)
    folder, classes = sidecar.parent, record.classes
    results = []
    with SplitRunner(folder / record.encoder.file, folder / record.decoder.file, record.model.config.num_queries,
                     record.head, record.top_k) as runner:
        for start in range(0, len(paths), batch):
            images = [load_image(p) for p in paths[start:start + batch]]
            feed = {"images": preprocess_batch(images, tuple(record.input_size)),
                    "orig_target_sizes": np.array([[im.width, im.height] for im in images], dtype=np.int64)}
            out = runner.infer(feed)
            if record.head == "raw":
                found = postprocess(out["logits"], out["pred_boxes"], [(im.height, im.width) for im in images],
                                    threshold=threshold)
                results += [d.to_list(classes) for d in found]
            else:
                for labels, boxes, scores in zip(out["labels"], out["boxes"], out["scores"]):
                    keep = scores.astype(np.float64) > threshold
                    results.append([{"label": int(l), "name": classes[int(l)], "score": float(s),
                                     "box": [float(v) for v in b]}
                                    for l, b, s in zip(labels[keep], boxes[keep], scores[keep])])
    return results


@pytest.mark.parametrize("head", ["raw", "detections"])
def test_split_artifact_detections_equal_the_python_split_pipeline(tools, split_exports, head):
    """rtdetr_detect on a split artifact, opened by its sidecar or either graph, gives the detections of the Python
    pipeline over SplitRunner: same labels, scores within 1e-5, boxes within 1e-3 px (the single file's limits).
    The raw head runs in batches of 3 on both sides, so the host step sees more than one image."""
    sidecar = split_exports[head]
    extra, batch = (("--batch", "3"), 3) if head == "raw" else ((), 1)
    encoder, decoder = (sidecar.parent / f"split.{part}.onnx" for part in ("encoder", "decoder"))
    total = 0
    for threshold in thresholds_for(python_split_detections(sidecar, DETECT_IMAGES, 0.0, batch)):
        want = python_split_detections(sidecar, DETECT_IMAGES, threshold, batch)
        runs = [cpp_detections(tools, opened, DETECT_IMAGES, threshold, *extra)
                for opened in ((sidecar, encoder, decoder) if threshold == 0.5 else (sidecar,))]
        for got in runs:
            assert got["backend"] == "onnxruntime-split" and got["head"] == head
            assert got["images"] == runs[0]["images"], "the sidecar and either graph open the same artifact"
        for path, cpp_image, python_image in zip(DETECT_IMAGES, runs[0]["images"], want):
            compare(cpp_image["detections"], python_image, f"split {head} {path.name} threshold {threshold:.6g}")
            total += len(python_image)
    assert total > 0, "the comparison needs detections to compare"


def copy_split(sidecar: Path, folder: Path) -> Path:
    folder.mkdir()
    for path in sidecar.parent.iterdir():
        shutil.copy(path, folder / path.name)
    return folder / sidecar.name


def assert_refused_without_output(result: subprocess.CompletedProcess, folder: Path, before: list[str],
                                  *fragments: str) -> None:
    assert_one_line_error(result, *fragments)
    assert result.stdout == "", "nothing printed but the error"
    assert sorted(p.name for p in folder.iterdir()) == before, "nothing written"


def test_a_split_artifact_with_a_missing_or_foreign_graph_is_refused_in_one_line(tools, split_exports, tmp_path):
    """A missing decoder graph, or a decoder from another export under the right name: one line naming the file,
    exit 1, nothing on stdout, no file written, whether the sidecar or the encoder graph is given."""
    image = DETECT_IMAGES[-1]
    missing = copy_split(split_exports["raw"], tmp_path / "missing")
    (missing.parent / "split.decoder.onnx").unlink()
    before = sorted(p.name for p in missing.parent.iterdir())
    for opened in (missing, missing.parent / "split.encoder.onnx"):
        assert_refused_without_output(run_tool(tools.detect, opened, image, "--json"), missing.parent, before,
                                      "split.decoder.onnx", "decoder graph of split.json is missing")

    foreign = copy_split(split_exports["raw"], tmp_path / "foreign")
    other = split_exports["detections"].parent / "split.decoder.onnx"  # another export's decoder, same name
    shutil.copy(other, foreign.parent / "split.decoder.onnx")
    before = sorted(p.name for p in foreign.parent.iterdir())
    for opened in (foreign, foreign.parent / "split.encoder.onnx", foreign.parent / "split.decoder.onnx"):
        assert_refused_without_output(run_tool(tools.detect, opened, image), foreign.parent, before,
                                      "split.decoder.onnx", "sha256 differs")

    # A sidecar for another host step, and a single file's sidecar given as a split one: one line each.
    record = json.loads(split_exports["raw"].read_text())
    newer = copy_split(split_exports["raw"], tmp_path / "newer")
    newer.write_text(json.dumps(dict(record, host_step={"version": 2})))
    assert_one_line_error(run_tool(tools.detect, newer, image), "split.json",
                          "host step version 2 is not the one these engines implement (1)")
    assert_one_line_error(run_tool(tools.detect, MICRO.with_suffix(".json"), image), "micro_raw_v1.json",
                          "not the sidecar of a split artifact")


# -- fuzzing -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fuzzing_the_file_readers_finds_nothing():
    """engines/fuzz.sh 30, the fuzzing CI does: the sidecar reader, the PNG/JPEG decoders and the ONNX metadata reader under libFuzzer with AddressSanitizer and
    fatal UndefinedBehaviorSanitizer, 30 s each from the committed seed corpus, side by side. Any crash, leak, sanitizer report,
    hang or exception other than rtdetr::Error fails it. Skips without clang and its libFuzzer runtime, except
    under CI, whose set-up installs them (engines/fuzz.sh --install-system-packages)."""
    result = subprocess.run(["bash", str(ENGINES / "fuzz.sh"), "30"], capture_output=True, text=True, timeout=900)
    if result.returncode == 3:
        reason = result.stderr.strip().splitlines()[-1]
        if os.environ.get("CI"):
            pytest.fail(f"CI must fuzz the engines: {reason}")
        pytest.skip(reason)
    assert result.returncode == 0, f"fuzzing found a problem:\n{result.stdout}\n{result.stderr[-3000:]}"
    for target in ("sidecar", "image", "onnx"):
        found = re.search(rf"^fuzz {target}: (\d+) executions in \d+ s, cov: (\d+)", result.stdout, re.M)
        assert found, f"no report for {target}:\n{result.stdout}"
        assert int(found[1]) > 1000 and int(found[2]) > 100, found[0]


# -- user errors ---------------------------------------------------------------------------------------------------
def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rtdetr_detect: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.slow
def test_user_errors_are_one_line(tools, exports, tmp_path):
    raw, detections = exports["raw"], exports["detections"]
    image = CPP_IMAGES[0]

    no_sidecar = tmp_path / "alone.onnx"
    shutil.copy(raw, no_sidecar)
    not_onnx = tmp_path / "garbage.onnx"
    not_onnx.write_bytes(b"this is not a protobuf")
    shutil.copy(raw.with_suffix(".json"), not_onnx.with_suffix(".json"))
    foreign_sidecar = tmp_path / "foreign.onnx"
    shutil.copy(raw, foreign_sidecar)
    foreign_sidecar.with_suffix(".json").write_text(json.dumps({"name": "someone else's model"}))
    broken_sidecar = tmp_path / "broken.onnx"
    shutil.copy(raw, broken_sidecar)
    broken_sidecar.with_suffix(".json").write_text('{"format": "rtdetr-export/onnx", "classes": [')
    mismatched = tmp_path / "mismatched.onnx"  # detections graph, raw sidecar
    shutil.copy(detections, mismatched)
    shutil.copy(raw.with_suffix(".json"), mismatched.with_suffix(".json"))
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    truncated_png = tmp_path / "cut.png"
    truncated_png.write_bytes((IMAGES / "cpp_shapes.png").read_bytes()[:2000])
    truncated_jpeg = tmp_path / "cut.jpg"
    truncated_jpeg.write_bytes((IMAGES / "cpp_street.jpg").read_bytes()[:5000])
    cmyk = tmp_path / "cmyk.jpg"
    with Image.open(image) as source:
        source.convert("CMYK").save(cmyk)
        progressive = io.BytesIO()
        source.resize((16, 12)).save(progressive, "JPEG", progressive=True)
    # A 600-byte progressive JPEG whose frame header claims 65500x65500: libjpeg would allocate the whole
    # coefficient buffer (over 12 GB, minutes) if the size were checked after jpeg_start_decompress.
    huge = bytearray(progressive.getvalue())
    frame = huge.index(b"\xff\xc2")
    huge[frame + 5:frame + 9] = struct.pack(">HH", 65500, 65500)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(huge))
    engine = tmp_path / "model.engine"
    shutil.copy(raw, engine)
    shutil.copy(raw.with_suffix(".json"), tmp_path / "model.engine.json")  # an engine's sidecar: MODEL.engine.json

    detect = tools.detect
    assert_one_line_error(run_tool(detect, tmp_path / "missing.onnx", image), "missing.onnx", "no such model file")
    assert_one_line_error(run_tool(detect, no_sidecar, image), "alone.json", "no sidecar")
    assert_one_line_error(run_tool(detect, not_onnx, image), "garbage.onnx", "ONNX Runtime cannot load it")
    assert_one_line_error(run_tool(detect, foreign_sidecar, image), "foreign.json", "not an rtdetr-export sidecar")
    assert_one_line_error(run_tool(detect, broken_sidecar, image), "broken.json", "not a readable sidecar")
    assert_one_line_error(run_tool(detect, mismatched, image), "mismatched.onnx", "sidecar")
    assert_one_line_error(run_tool(detect, raw, tmp_path / "nope.png"), "nope.png", "no such image file")
    assert_one_line_error(run_tool(detect, raw, text), "notes.jpg", "not a PNG or JPEG image")
    assert_one_line_error(run_tool(detect, raw, truncated_png), "cut.png", "damaged PNG")
    assert_one_line_error(run_tool(detect, raw, truncated_jpeg), "cut.jpg", "damaged JPEG")
    assert_one_line_error(run_tool(detect, raw, cmyk), "cmyk.jpg", "CMYK")
    started = time.monotonic()
    assert_one_line_error(run_tool(detect, raw, bomb), "bomb.jpg", "image too large (65500x65500)")
    assert time.monotonic() - started < 30, "refused before decoding"
    assert_one_line_error(run_tool(detect, raw, tmp_path), "no such image file")
    if "TensorRT backend: not built" in (BUILD / "configure.log").read_text():
        assert_one_line_error(run_tool(detect, engine, image), "model.engine", "no TensorRT backend")
    assert_one_line_error(run_tool(detect, raw, image, "--size", "640"), "takes 320x320 images only")
    for args in ([], [raw], [raw, image, "--threshold", "high"], [raw, image, "--batch", "0"], [raw, image, "--x"],
                 [raw, image, "--size", "640x"]):
        result = run_tool(detect, *args)
        assert result.returncode == 2 and result.stderr.startswith("rtdetr_detect: ") and "usage:" in result.stderr
    for args in (["resize", image, "0", "5", tmp_path / "o"], ["decode", text, tmp_path / "o"]):
        result = run_tool(tools.image, *args)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
