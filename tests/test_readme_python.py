"""The README's Python section runs exactly as written and does what it says."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- python-api:begin -->\n```python\n(.*?)```\n<!-- python-api:end -->", text, re.S)
    assert block, "README.md lost its python-api block"
    return block.group(1)


@pytest.mark.slow
def test_the_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "tests" / "data" / "images", tmp_path / "photos",
                    ignore=shutil.ignore_patterns("cpp_*", "*.md", "*.py"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)
    assert capsys.readouterr().out.split() == ["True", "True"]
    assert namespace["again"].passed and namespace["again"].artifact == "model.onnx"
    assert {r["target"] for r in namespace["report"]["results"]} >= {"torch-fp32-cpu", "onnxruntime-cpu:model.onnx"}
    assert type(namespace["detector"]).__name__ == "Detector" and type(namespace["found"]).__name__ == "Detections"
    predictions = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert len(predictions["images"]) == len(list((tmp_path / "photos").iterdir()))
    for name in ("model.onnx", "model.json", "model_int8.onnx", "model_int8.json"):
        assert (tmp_path / name).is_file()
