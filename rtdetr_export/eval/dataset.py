"""A COCO-format detection dataset as eval reads it: annotations checked, categories mapped to the model's classes.

Category ids are the dataset's own; the model predicts class indices. The two meet by name: each category's
``name`` must be one of the model's class names (its ``id2label``), else a one-line error names the categories
the model does not know.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.errors import RTDetrExportError


@dataclass
class CocoDataset:
    """The annotation file, the image folder, and the mapping from model class index to category id."""

    annotations: Path
    images_dir: Path
    data: dict[str, Any] = field(repr=False)
    class_to_category: dict[int, int] = field(default_factory=dict)

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.data["images"]

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.data["categories"]

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.images_dir / image["file_name"]


def _fail(path: Path, why: str) -> RTDetrExportError:
    return RTDetrExportError(f"{path}: {why}; give a COCO instances file (images, annotations, categories)")


def read_coco(annotations: str | Path, images_dir: str | Path) -> CocoDataset:
    """Read and check a COCO instances file and its image folder; one-line errors for anything unusable."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    if not annotations.is_file():
        raise RTDetrExportError(f"{annotations}: no such annotation file")
    if not images_dir.is_dir():
        raise RTDetrExportError(f"{images_dir} is not a folder of images")
    try:
        data = json.loads(annotations.read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(annotations, f"not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise _fail(annotations, "not COCO detection annotations (no images/annotations/categories lists)")
    for key, fields in (("images", ("id", "file_name")), ("categories", ("id", "name")),
                        ("annotations", ("image_id", "category_id", "bbox"))):
        bad = next((entry for entry in data[key] if not isinstance(entry, dict)
                    or any(f not in entry for f in fields)), None)
        if bad is not None:
            raise _fail(annotations, f"an entry of {key!r} lacks {', '.join(fields)}")
    if not data["images"]:
        raise _fail(annotations, "no images listed")
    if not any(path.is_file() for path in images_dir.iterdir()):
        raise RTDetrExportError(f"{images_dir} is empty; give the folder the annotations' file_name entries are in")
    for entry in data["annotations"]:
        entry.setdefault("iscrowd", 0)
        if "area" not in entry:
            entry["area"] = float(entry["bbox"][2]) * float(entry["bbox"][3])
    return CocoDataset(annotations, images_dir, data)


def map_categories(dataset: CocoDataset, class_names: list[str]) -> dict[int, int]:
    """Model class index -> category id, by name; an error names every category the model does not know."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [c["name"] for c in dataset.categories if c["name"] not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        raise RTDetrExportError(f"the model does not know the dataset's categories {shown} (its classes: "
                                f"{', '.join(class_names[:8])}{', ...' if len(class_names) > 8 else ''}); evaluate "
                                "on a dataset with the model's classes")
    return {index[c["name"]]: int(c["id"]) for c in dataset.categories}
