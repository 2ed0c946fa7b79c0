"""A model detects as many classes as its score heads have rows, whatever config.json says.

The trained fixture (tests/data/fixture/rtdetrv2_shapes, a fine-tuned v2 with its own classes) is the subject. Its
class count is read from the weights file here, never hard-coded: the fixture may be retrained. Names come from
``id2label`` where it has them, ``class_<i>`` otherwise; a config that disagrees with the weights is one warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportWarning
from rtdetr_export.weights import load_model
from paths import TESTS

FIXTURE = TESTS / "data" / "fixture" / "rtdetrv2_shapes"
IMAGE = TESTS / "data" / "fixture" / "shapes_val" / "images" / "000001.jpg"


def score_head_rows(folder: Path) -> int:
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return weights.get_slice("model.decoder.class_embed.0.weight").get_shape()[0]


def fixture_names() -> list[str]:
    id2label = json.loads((FIXTURE / "config.json").read_text())["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def copy_with_config(tmp_path: Path, edit) -> Path:
    """The fixture folder with its config.json changed by ``edit(config)``."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(FIXTURE / "model.safetensors")
    config = json.loads((FIXTURE / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def without_labels(config: dict) -> None:
    for key in ("id2label", "label2id", "num_labels"):
        config.pop(key, None)


def test_the_fine_tuned_fixture_has_its_score_heads_class_count_and_its_id2label_names():
    model = load_model(FIXTURE)
    assert model.config.num_classes == score_head_rows(FIXTURE) == len(fixture_names())
    assert model.config.class_names == fixture_names()


def test_a_folder_without_id2label_takes_the_count_from_the_score_head_and_names_classes_by_index(tmp_path):
    folder = copy_with_config(tmp_path, without_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RTDetrExportWarning)  # nothing disagrees, so nothing to warn about
        model = load_model(folder)
    rows = score_head_rows(FIXTURE)
    assert model.config.num_classes == rows
    assert model.config.class_names == [f"class_{i}" for i in range(rows)]


@pytest.mark.parametrize("names", [80, 3], ids=["more-names-than-rows", "fewer-names-than-rows"])
def test_an_id2label_that_disagrees_with_the_score_head_is_one_warning_and_the_weights_win(names, tmp_path):
    def relabel(config):
        config["id2label"] = {str(i): f"thing{i}" for i in range(names)}
        config["label2id"] = {f"thing{i}": i for i in range(names)}
    folder = copy_with_config(tmp_path, relabel)
    rows = score_head_rows(FIXTURE)

    with pytest.warns(RTDetrExportWarning, match=f"id2label names {names} classes but the score head has {rows}"):
        model = load_model(folder)
    assert model.config.num_classes == rows
    assert model.config.class_names == [f"thing{i}" if i < names else f"class_{i}" for i in range(rows)]

    result = CliRunner().invoke(main, ["describe", "--model", str(folder)])
    assert result.exit_code == 0, result.output
    warning = (f"warning: {folder}: config.json id2label names {names} classes but the score head has {rows}; "
               f"using {rows} classes (names from id2label where it has them, class_<i> otherwise)")
    assert [line for line in result.stderr.splitlines() if line.strip()] == [warning]
    assert f"{rows} classes" in result.stdout


def _predicted(folder: Path, out: Path) -> list[dict]:
    result = CliRunner().invoke(main, ["predict", str(IMAGE), "--model", str(folder), "--threshold", "0.3",
                                       "--quiet", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["annotations"]


def test_predict_names_labels_from_id2label_when_present_and_by_index_otherwise(tmp_path):
    named = _predicted(FIXTURE, tmp_path / "named")
    assert named, "the fixture must detect something in its own validation image, or no label is checked"
    assert {a["category_name"] for a in named} <= set(fixture_names())
    assert all(a["category_name"] == fixture_names()[a["category_id"]] for a in named)

    unnamed = _predicted(copy_with_config(tmp_path, without_labels), tmp_path / "unnamed")
    assert [a["category_id"] for a in unnamed] == [a["category_id"] for a in named]
    assert all(a["category_name"] == f"class_{a['category_id']}" for a in unnamed)
