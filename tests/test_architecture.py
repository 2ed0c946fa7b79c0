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
    ["select"],  # the fastest CPU artifact within an AP budget: bench's timing and eval's AP over the candidates
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
    ("def load_onnx(", "artifact/files.py"),
    ("def sidecar_path(", "artifact/files.py"),
    ("def make_feed(", "artifact/files.py"),
    ("def library_versions(", "artifact/records/fields.py"),
    ("def open_artifact(", "artifact/files.py"),
    ("class Sampler(", "model/sampler.py"),
    ("def reference_model(", "pipeline/verification.py"),
    ("def verify_candidate(", "verify/verification.py"),
    ("def io_description(", "artifact/files.py"),
    ("class Detections:", "imaging/postprocess.py"),
    ("def iou_matrix(", "imaging/boxes.py"),
    ("def paired_iou(", "imaging/boxes.py"),
    ("def sigmoid(", "imaging/boxes.py"),
    ("def cxcywh_to_xyxy(", "imaging/boxes.py"),
    ("def folded_conv_bn(", "model/layers.py"),
    ("def summarize(", "stats.py"),
    ("torch.onnx.export(", "export/torch_export.py"),
    ("onnx.load(", "artifact/files.py"),
])
def test_each_helper_has_one_home(definition, home):
    homes = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if definition in path.read_text())
    assert homes == [home]


def test_the_cpp_engines_use_the_same_sidecar_rule():
    source = (PACKAGE.parent / "engines" / "src" / "sidecar.cpp").read_text()
    rule = source[source.index("Sidecar::path_for"):source.index("Sidecar::load_for")]
    # One rule: .onnx -> with_suffix(".json"), anything else -> appended ".json"; no fallback by existence.
    assert 'if (!is_onnx) return model_path + ".json";' in rule and "ifstream" not in rule


# The fields of our sidecars and ONNX metadata (every schema); only artifact/records/ reads them by key.
RECORD_FIELDS = {"format", "schema_version", "created", "tool", "libraries", "model", "method", "sampler",
                 "input_size", "input_size_range", "classes", "precision", "precision_recipe", "export", "io",
                 "op_census", "verification", "tensorrt", "gpu", "onnx", "head", "build", "profile", "io_tensors",
                 "latency", "opset", "top_k", "batch", "dynamic_batch", "dynamic_size", "bilinear_op", "simplifier",
                 "source", "config", "hub", "inputs", "input_images", "outputs", "graphs", "host_step", "part",
                 "ir", "runtime", "selection"}
# Names a record's dict goes by when someone reads it by hand (what this test exists to stop).
RECORD_HOLDERS = ("provenance", "sidecar", "meta", "record", "served", "export", "prov", "onnx_provenance")
RECORD_PACKAGE = PACKAGE / "artifact" / "records"  # the record module: one package, four short files


def _holder(node: ast.AST) -> str | None:
    """The name a subscripted or ``.get``-read value goes by (``x``, ``self.x``, ``x.y``: the last name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):  # read_provenance(path)["export"], json.loads(...)["precision"]
        return _holder(node.func)
    if isinstance(node, ast.Subscript):  # provenance["export"]["head"]
        return _holder(node.value)
    return None


def record_reads(path: Path) -> list[str]:
    """``holder["field"]`` and ``holder.get("field")`` of a record field on a record-like holder in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        key, holder = None, None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key, holder = node.slice.value, _holder(node.value)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            key, holder = node.args[0].value, _holder(node.func.value)
        if key in RECORD_FIELDS and holder and any(word in holder.lower() for word in RECORD_HOLDERS):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {holder}[{key!r}]")
    return found


def test_only_the_record_module_reads_a_sidecar_by_key():
    reads = [read for path in sorted(PACKAGE.rglob("*.py")) if RECORD_PACKAGE not in path.parents
             for read in record_reads(path)]
    assert reads == []


def test_the_key_rule_sees_a_hand_read_provenance(tmp_path):
    """The rule above is not vacuous: the reads it exists to stop are found."""
    sample = tmp_path / "sample.py"
    sample.write_text('top_k = provenance["export"].get("top_k") or 300\nhead = meta.get("export")["head"]\n'
                      'precision = detector.provenance["precision"]\n')
    assert len(record_reads_at(sample)) == 4


def record_reads_at(path: Path) -> list[str]:
    # record_reads names files relative to the package; a file outside it is named whole.
    global PACKAGE
    saved, PACKAGE = PACKAGE, path.parent
    try:
        return record_reads(path)
    finally:
        PACKAGE = saved


MAX_COMMAND_PARAMETERS = 12


def test_no_cli_command_takes_more_than_twelve_parameters():
    """Options that belong together reach a command as one of the API's dataclasses (cli/options.py)."""
    from rtdetr_export.cli.main import main

    for name, command in main.commands.items():
        count = command.callback.__code__.co_argcount
        inner = getattr(command.callback, "__wrapped__", None)
        while inner is not None:  # option groups wrap the function that receives their values
            count = inner.__code__.co_argcount
            inner = getattr(inner, "__wrapped__", None)
        assert count <= MAX_COMMAND_PARAMETERS, f"{name} takes {count} parameters"


def test_every_command_lists_every_option_with_its_default_in_help():
    from click.testing import CliRunner

    from rtdetr_export.cli.main import main

    for name, command in main.commands.items():
        text = CliRunner().invoke(main, [name, "--help"], terminal_width=200).output
        for param in command.params:
            if isinstance(param, click_option_type()) and not param.hidden:
                # The option's own entry (its names first on a line), not a mention in another's help.
                entry = "\n  " + ", ".join(param.secondary_opts and param.opts or sorted(param.opts, key=len))
                assert entry in text, f"{name} --help does not list {param.opts[0]}"
                if param.show_default and param.default not in (None, False, ()):
                    assert "[default:" in text.split(entry, 1)[1].split("\n  -")[0], \
                        f"{name} --help gives no default for {param.opts[0]}"


def click_option_type():
    import click

    return click.Option
