"""Writes the fuzzers' seed corpus (engines/fuzz/corpus/<target>/): real inputs and damaged variants of them.

    python3 engines/fuzz/make_corpus.py            # regenerate the derived seeds from the committed real ones
    python3 engines/fuzz/make_corpus.py --export   # first re-export the tiny-preset sidecars (schema of this tree)

sidecar: tests/data/schema_examples's sidecar (schema 1) and two sidecars that `rtdetr-export onnx --preset tiny` writes
(raw head; detections head with a dynamic size), kept as real-*.json; from them, the same files as schema 2 and 4,
without "sampler", and truncated and bit-flipped copies.
image: the small test images, tiny PNGs of every colour type, JPEGs in each layout, with Exif/XMP orientations
in both byte orders, and truncated and bit-flipped copies. Crashing inputs found later are added as regress-*.

Seeded, so a rerun rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
SIDECARS, IMAGES = CORPUS / "sidecar", CORPUS / "image"


def export_real_sidecars() -> None:
    """The sidecars `rtdetr-export onnx --preset tiny` writes today: raw head, and a dynamic-size detections head."""
    variants = {"tiny-raw": [],
                "tiny-detections-dynamic": ["--head", "detections", "--top-k", "20", "--dynamic-size",
                                            "--min-size", "64", "--opt-size", "128", "--max-size", "256"]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in variants.items():
            onnx_path = Path(tmp) / f"{name}.onnx"
            subprocess.run([sys.executable, "-m", "rtdetr_export", "onnx", "--preset", "tiny", "--quiet",
                            "-o", str(onnx_path), *extra], check=True)
            sidecar = onnx_path.with_suffix(".json")
            version = json.loads(sidecar.read_text())["schema_version"]
            for old in SIDECARS.glob(f"real-v*-{name}.json"):
                old.unlink()
            shutil.copy(sidecar, SIDECARS / f"real-v{version}-{name}.json")
    shutil.copy(ROOT / "tests/data/schema_examples/micro_raw_v1.json", SIDECARS / "real-v1-micro.json")


def damaged(data: bytes, rng: random.Random, name: str, folder: Path) -> None:
    """Three truncations and three copies with a few flipped bits."""
    for fraction in (0.1, 0.5, 0.9):
        (folder / f"trunc{int(fraction * 100)}-{name}").write_bytes(data[: int(len(data) * fraction)])
    for k in range(3):
        flipped = bytearray(data)
        for _ in range(1 + k * 2):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        (folder / f"flip{k}-{name}").write_bytes(bytes(flipped))


def sidecar_corpus(rng: random.Random) -> None:
    for real in sorted(SIDECARS.glob("real-*.json")):
        record = json.loads(real.read_text())
        stem = real.name.split("-", 2)[2]  # real-v3-tiny-raw.json -> tiny-raw.json
        method, op = record.get("method", "default"), record["export"].get("bilinear_op") or "gridsample"
        v4 = dict(record, schema_version=4,
                  sampler=record.get("sampler") or ("gather-nearest" if method == "discrete" else f"{op}-bilinear"))
        v2 = {k: v for k, v in record.items() if k not in ("input_size_range", "sampler")} | {"schema_version": 2}
        no_sampler = {k: v for k, v in record.items() if k != "sampler"}
        for name, variant in (("v4", v4), ("v2", v2), ("nosampler", no_sampler)):
            if record.get("input_size_range") and name == "v2":
                continue  # a dynamic-size file has no schema-2 form
            (SIDECARS / f"{name}-{stem}").write_text(json.dumps(variant, indent=1))
        damaged(real.read_bytes(), rng, stem, SIDECARS)


def jpeg_bytes(image: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **save)
    return out.getvalue()


def png_bytes(image: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def with_app1(jpeg: bytes, *payloads: bytes) -> bytes:
    """The JPEG with APP1 segments inserted right after SOI."""
    segments = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return jpeg[:2] + segments + jpeg[2:]


def tiff_orientation(value: int, big_endian: bool = False, type_: int = 3) -> bytes:
    """A minimal Exif TIFF block: IFD0 with one Orientation entry (value in the entry's 4-byte field)."""
    e = ">" if big_endian else "<"
    field = struct.pack(e + "HH", value, 0) if type_ in (3, 8) else struct.pack(e + "I", value)
    return (b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "IH", 8, 1) + \
        struct.pack(e + "HHI", 0x0112, type_, 1) + field + struct.pack(e + "I", 0)


def image_corpus(rng: random.Random) -> None:
    for name in ("cpp_palette.png", "cpp_gray.jpg"):
        shutil.copy(ROOT / "tests/data/images" / name, IMAGES / f"real-{name}")
    pixels = np.random.default_rng(7).integers(0, 256, (12, 16, 4), dtype=np.uint8)
    rgb = Image.fromarray(pixels[..., :3])
    made = {
        "rgb.png": png_bytes(rgb),
        "rgba.png": png_bytes(Image.fromarray(pixels, "RGBA")),
        "grey.png": png_bytes(Image.fromarray(pixels[..., 0])),
        "grey-alpha.png": png_bytes(Image.fromarray(pixels[..., :2], "LA")),
        "bilevel.png": png_bytes(Image.fromarray(pixels[..., 0] > 128)),
        "palette-trns.png": png_bytes(rgb.quantize(8), transparency=2),
        "grey16.png": png_bytes(Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)),
        "baseline420.jpg": jpeg_bytes(rgb, quality=80),
        "baseline444.jpg": jpeg_bytes(rgb, quality=80, subsampling=0),
        "progressive.jpg": jpeg_bytes(rgb, quality=80, progressive=True),
        "grey.jpg": jpeg_bytes(rgb.convert("L"), quality=80),
        "cmyk.jpg": jpeg_bytes(rgb.convert("CMYK"), quality=80),
    }
    plain = made["baseline420.jpg"]
    xmp = b'http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:Description tiff:Orientation="8"/></x:xmpmeta>'
    made |= {
        "exif6-ii.jpg": with_app1(plain, b"Exif\0\0" + tiff_orientation(6)),
        "exif8-mm.jpg": with_app1(plain, b"Exif\0\0" + tiff_orientation(8, big_endian=True)),
        "exif5-long.jpg": with_app1(plain, b"Exif\0\0" + tiff_orientation(5, type_=4)),
        "exif3-split.jpg": with_app1(plain, b"Exif\0\0" + tiff_orientation(3)[:10],
                                     b"Exif\0\0" + tiff_orientation(3)[10:]),
        "xmp8.jpg": with_app1(plain, xmp),
        "exif7-progressive.jpg": with_app1(made["progressive.jpg"], b"Exif\0\0" + tiff_orientation(7)),
    }
    for name, data in made.items():
        (IMAGES / name).write_bytes(data)
    for name in ("rgb.png", "palette-trns.png", "progressive.jpg", "exif6-ii.jpg", "exif8-mm.jpg"):
        damaged(made[name], rng, name, IMAGES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", action="store_true", help="re-export the tiny-preset sidecars first")
    args = parser.parse_args()
    for folder in (SIDECARS, IMAGES):
        folder.mkdir(parents=True, exist_ok=True)
    if args.export:
        export_real_sidecars()
    for folder in (SIDECARS, IMAGES):
        # Derived seeds are rewritten; real ones and regression inputs stay.
        for path in folder.iterdir():
            if not path.name.startswith(("real-", "regress-")):
                path.unlink()
    rng = random.Random(26)
    sidecar_corpus(rng)
    image_corpus(rng)


if __name__ == "__main__":
    main()
