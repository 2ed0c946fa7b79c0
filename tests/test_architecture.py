"""The package's layers point down and never in a circle (docs/architecture.md draws them).

Every import is read from the source, wherever it stands (module level, inside a function, under
TYPE_CHECKING): a misplaced type import is a misplaced dependency too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rtdetr_export"

# Bottom to top. A module may import from its own group and from groups of a lower layer, never from a group of
# its own layer or above. docs/architecture.md says why each group sits where it does.
LAYERS = [
    ["errors"],
    ["rtdetr_export", "files", "stats"],  # the package root holds only __version__ and the lazy API map
    ["imaging"],
    ["model"],
    ["weights"],
    ["artifact", "onnx_graph"],
    ["backends"],
    ["export", "precision", "verify"],
    ["pipeline"],
    ["predict", "bench", "eval"],
    ["serving"],  # Triton: repositories from artifacts, a client through the Detector, load reports (bench's machine)
    ["cli"],
    ["__main__"],
]
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The rtdetr_export modules ``path`` imports; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("rtdetr_export")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rtdetr_export"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if _is_module(candidate) else node.module)
    return found


GRAPH = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def test_every_group_has_a_layer():
    assert {group(module) for module in GRAPH} <= set(RANK), "add the new group to LAYERS and docs/architecture.md"


def test_imports_point_down_the_layers():
    upward = [f"{source} imports {target}" for source, targets in GRAPH.items() for target in targets
              if group(target) != group(source) and RANK[group(target)] >= RANK[group(source)]]
    assert upward == []


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("definition, home", [
    ("def load_onnx(", "artifact.py"),
    ("def sidecar_path(", "artifact.py"),
    ("def make_feed(", "artifact.py"),
    ("def provenance_header(", "artifact.py"),
    ("def io_description(", "artifact.py"),
    ("class Detections:", "imaging/postprocess.py"),
    ("def iou_matrix(", "imaging/boxes.py"),
    ("def paired_iou(", "imaging/boxes.py"),
    ("def sigmoid(", "imaging/boxes.py"),
    ("def cxcywh_to_xyxy(", "imaging/boxes.py"),
    ("def folded_conv_bn(", "model/layers.py"),
    ("def summarize(", "stats.py"),
    ("torch.onnx.export(", "export/torch_export.py"),
    ("onnx.load(", "artifact.py"),
])
def test_each_helper_has_one_home(definition, home):
    homes = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if definition in path.read_text())
    assert homes == [home]


def test_the_cpp_engines_use_the_same_sidecar_rule():
    source = (PACKAGE.parent / "engines" / "src" / "sidecar.cpp").read_text()
    rule = source[source.index("Sidecar::path_for"):source.index("Sidecar::load_for")]
    # One rule: .onnx -> with_suffix(".json"), anything else -> appended ".json"; no fallback by existence.
    assert 'if (!is_onnx) return model_path + ".json";' in rule and "ifstream" not in rule
