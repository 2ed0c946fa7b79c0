"""Writes the fuzzers' seed corpus (engines/fuzz/corpus/<target>/): real inputs and damaged variants of them.

    python3 engines/fuzz/make_corpus.py            # regenerate the derived seeds from the committed real ones
    python3 engines/fuzz/make_corpus.py --export   # first re-export the tiny-preset sidecars (schema of this tree)

sidecar: tests/data/schema_examples's sidecar (schema 1) and two sidecars that `rtdetr-export onnx --preset tiny` writes
(raw head; detections head with a dynamic size), kept as real-*.json; from them, the same files as schema 2 and 4,
without "sampler", and truncated and bit-flipped copies.
The split sidecars of `rtdetr-export onnx --preset tiny --split` (raw and detections heads) are kept as
real-v4-tiny-split-*.json; from them, a copy recording another host step version, one without its decoder graph,
and truncated and bit-flipped copies.
image: the small test images, tiny PNGs of every colour type, JPEGs in each layout, with Exif/XMP orientations
in both byte orders, and truncated and bit-flipped copies. Crashing inputs found later are added as regress-*.
onnx: small ONNX models (one node, one initializer) carrying the metadata the exporter embeds: a split artifact's
encoder and decoder part (rtdetr_export.artifact.embed_split_part), a single file's record fields, none; and
truncated and bit-flipped copies. Real graphs hold their metadata after megabytes of weights, past -max_len.

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
SIDECARS, IMAGES, ONNX = CORPUS / "sidecar", CORPUS / "image", CORPUS / "onnx"
SPLIT_VARIANTS = {"tiny-split-raw": ["--split"],
                  "tiny-split-detections": ["--split", "--head", "detections", "--top-k", "20"]}


def export_real_sidecars(split_only: bool = False) -> None:
    """The sidecars `rtdetr-export onnx --preset tiny` writes today: raw head, a dynamic-size detections head, and
    the split artifacts of both heads (``split_only``: those alone)."""
    variants = {"tiny-raw": [],
                "tiny-detections-dynamic": ["--head", "detections", "--top-k", "20", "--dynamic-size",
                                            "--min-size", "64", "--opt-size", "128", "--max-size", "256"]}
    variants = SPLIT_VARIANTS if split_only else variants | SPLIT_VARIANTS
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
    if not split_only:
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
    for real in sorted(p for p in SIDECARS.glob("real-*.json") if "-split-" not in p.name):
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


def split_sidecar_corpus(rng: random.Random) -> None:
    """Variants of the split sidecars (their own generator: the older seeds keep their bytes)."""
    for real in sorted(SIDECARS.glob("real-*-split-*.json")):
        record = json.loads(real.read_text())
        stem = real.name.split("-", 2)[2]
        other_step = dict(record, host_step={"version": record["host_step"]["version"] + 1})
        no_decoder = dict(record, graphs={"encoder": record["graphs"]["encoder"]})
        for name, variant in (("hostnext", other_step), ("nodecoder", no_decoder)):
            (SIDECARS / f"{name}-{stem}").write_text(json.dumps(variant, indent=1))
        damaged(real.read_bytes(), rng, stem, SIDECARS)


def small_onnx(metadata: dict[str, str]) -> bytes:
    """A one-node model with a 64-float initializer (a length-delimited field to skip before the metadata) and
    ``metadata`` as its metadata_props, each value JSON as the exporter writes them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(64, dtype=np.float32), "weight")
    graph = helper.make_graph([helper.make_node("Add", ["images", "weight"], ["logits"])], "small",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [64])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return model.SerializeToString()


def onnx_corpus(rng: random.Random) -> None:
    sys.path.insert(0, str(ROOT))
    from rtdetr_export.artifact import SplitPart

    made = {f"split-{part}.onnx": small_onnx({f"rtdetr_export.{k}": v
                                               for k, v in SplitPart(part, "tiny.json").to_json().items()})
            for part in ("encoder", "decoder")}
    made["single.onnx"] = small_onnx({"rtdetr_export.format": "rtdetr-export/onnx", "rtdetr_export.schema_version": 4})
    made["plain.onnx"] = small_onnx({})
    for name, data in made.items():
        (ONNX / name).write_bytes(data)
        damaged(data, rng, name, ONNX)


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
    parser.add_argument("--export-split", action="store_true", help="re-export the split sidecars only first")
    args = parser.parse_args()
    for folder in (SIDECARS, IMAGES, ONNX):
        folder.mkdir(parents=True, exist_ok=True)
    if args.export or args.export_split:
        export_real_sidecars(split_only=not args.export)
    for folder in (SIDECARS, IMAGES, ONNX):
        # Derived seeds are rewritten; real ones and regression inputs stay.
        for path in folder.iterdir():
            if not path.name.startswith(("real-", "regress-")):
                path.unlink()
    rng = random.Random(26)
    sidecar_corpus(rng)
    image_corpus(rng)
    split_sidecar_corpus(random.Random(27))
    onnx_corpus(random.Random(28))


if __name__ == "__main__":
    main()
