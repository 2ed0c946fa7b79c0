"""Documented ONNX op support per deployment target, for the ops our graphs contain.

Every verdict in ``TABLE`` comes from a published support list (``SOURCES``), checked by hand; nothing there was
measured. ``MEASURED`` holds what was: real conversions and runs by ``benchmarks/portability.py``.
Verdicts: ``yes``, ``no``, ``partial`` (works with a restriction or only on some versions; see the note)
and ``unknown`` (not confirmed; every op absent from ``TABLE`` is unknown).

Targets:

- ``TensorRT 8.4``: the 8.4 ONNX parser (documented up to opset 13).
- ``TensorRT 8.5+``: the 8.5 and 8.6 parsers (opset 17); 9.x/10.x have their own column.
- ``TensorRT 10``: the 10.x parser (10.0: opsets 9-20; 10.15: 9-24).
- ``OpenVINO``: the ONNX frontend's conversion (device plugins, e.g. the NPU plugin, may cover less).
- ``NPU (typical)``: RKNN-Toolkit2 as the representative list (a verdict is ``yes`` when releases 1.6.0 and
  2.1.0 both support the op, ``partial`` when only 2.x does or a restriction applies, ``no`` when neither);
  the notes add what Kneron's and NVIDIA Orin DLA's lists say.

The table covers every op that ``rtdetr-export onnx --preset tiny --method default|discrete
[--bilinear-op gather|gridsample] --head raw|detections [--dynamic-batch]`` produces at opset 17, plus QuantizeLinear/DequantizeLinear for
INT8 variants (Cast, which FP16 variants add, is already in the discrete graphs).
Run ``python -m rtdetr_export.export.portability`` to print the table as markdown (docs/portability.md).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

TARGETS = ("TensorRT 8.4", "TensorRT 8.5+", "TensorRT 10", "OpenVINO", "NPU (typical)")


def _gh(repo: str, ref: str, path: str) -> str:
    return f"https://github.com/{repo}/blob/{ref}/{path}"


_TRT_CHANGELOG = _gh("onnx/onnx-tensorrt", "0137504e2b25fe5253bd85d26b073378fb67805b", "docs/Changelog.md")
SOURCES: dict[str, list[str]] = {
    "TensorRT 8.4": [
        _gh("onnx/onnx-tensorrt", "009d6541b4ee1fa3f3150cd7cbabe7e56aa54840", "docs/operators.md")
        + ' ("TensorRT 8.4 supports operators up to Opset 13"; no GridSample or LayerNormalization row; Mod: N)',
        _TRT_CHANGELOG + " (8.4 GA: Xor added)",
    ],
    "TensorRT 8.5+": [
        _gh("onnx/onnx-tensorrt", "6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc", "docs/operators.md")
        + ' ("TensorRT 8.5 supports operators up to Opset 17"; GridSample Y, Mod Y, LayerNormalization N)',
        _TRT_CHANGELOG + " (8.5 GA: GridSample and Mod added; 8.6 EA: LayerNormalization added)",
    ],
    "TensorRT 10": [
        _gh("onnx/onnx-tensorrt", "main", "docs/operators.md")
        + " (the TensorRT 10.15 matrix: opsets 9-24; the 10.0 matrix: opsets 9-20)",
        "https://github.com/NVIDIA/TensorRT/issues/4646 (GridSample wrong at opset 20, right at 18; TensorRT 10.13.3)",
        "https://github.com/onnx/onnx-tensorrt/pull/1060 (cause: opset 20 renamed bilinear to linear and the parser "
        "silently falls back to nearest)",
    ],
    "OpenVINO": [
        _gh("openvinotoolkit/openvino", "b2cfecf892aeb3359ffa9e5df80bb98bb883a2f9",
            "src/frontends/onnx/docs/supported_ops.md") + " (ONNX frontend: every op of ours is listed)",
        _gh("openvinotoolkit/openvino", "16f3e848946108e134866e32d077991b0385bc8f",
            "src/frontends/onnx/frontend/src/op/grid_sample.cpp") + " (one translator, opset-16 mode names)",
    ],
    "NPU (typical)": [
        _gh("rockchip-linux/rknn-toolkit2", "2c2d03def0c0908c86985b8190e973976ecec74c",
            "doc/RKNN-Toolkit2_OP_Support-1.6.0.md"),
        _gh("airockchip/rknn-toolkit2", "deaba85fc437a28db0b0c29f27d8929f4c5816a1",
            "doc/RKNNToolKit2_OP_Support-v2.1.0.md") + ' ("the corresponding ONNX opset version is 19")',
        _gh("kneron/document_center", "14526fea0a7d29913a677c0b6b103035b3836dd4",
            "docs/toolchain/appendix/operators.md") + " (Kneron KL520/720/530/630/730)",
        _gh("NVIDIA/Deep-Learning-Accelerator-SW", "372cea3d515c5c28a8a85d981e8c5517f6847bdd", "operators/README.md")
        + " (Orin DLA through TensorRT 8.5/8.6)",
    ],
}

# Highest opset each target documents; None where no single number is published.
MAX_OPSET: dict[str, int | None] = {"TensorRT 8.4": 13, "TensorRT 8.5+": 17, "TensorRT 10": 20,
                                    "OpenVINO": None, "NPU (typical)": 19}
_OPSET_NOTE = {"TensorRT 8.4": "8.4", "TensorRT 8.5+": "8.5/8.6", "TensorRT 10": "10.0 (10.15: 24)",
               "NPU (typical)": "RKNN-Toolkit2 2.1"}

_QDQ_TRT = ("partial", "zero point must be 0 (symmetric quantization only)")
_RKNN2 = "RKNN-Toolkit2 2.x only (1.6.0: not supported)"
_B1 = "RKNN-Toolkit2: batch size 1 only"
_TOPK_TRT8 = ("yes", "K must be a constant (ours is)")

# Per op, the targets whose verdict is not a plain "yes"; (verdict, note) pairs.
TABLE: dict[str, dict[str, tuple[str, str]]] = {
    **{op: {} for op in (
        "Add", "AveragePool", "Cast", "Clip", "Concat", "Conv", "Div", "Equal", "Flatten", "Gather", "Gemm", "Less",
        "MatMul", "MaxPool", "Mul", "ReduceMax", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid",
        "Split", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where")},
    "And": {"NPU (typical)": ("partial", _RKNN2 + "; Kneron: no")},
    "Erf": {"NPU (typical)": ("partial", _RKNN2 + "; Kneron: KL530/630/730 only")},
    "Expand": {"NPU (typical)": ("partial", _RKNN2)},
    "Floor": {"NPU (typical)": ("partial", _RKNN2 + "; Kneron: no")},
    "Log": {"NPU (typical)": ("partial", _RKNN2 + "; Kneron: KL730 only")},
    "GatherElements": {"NPU (typical)": ("partial", _RKNN2 + "; Kneron: no; Orin DLA: reconstruction only")},
    "GridSample": {
        "TensorRT 8.4": ("no", "no importer before 8.5 (needs a plugin)"),
        "TensorRT 8.5+": ("yes", "FP32/FP16"),
        "TensorRT 10": ("partial", "4-D only; at opset 20 it silently samples nearest instead of bilinear "
                        "(seen on 10.13.3, NVIDIA/TensorRT#4646): export with opset <= 19"),
        "OpenVINO": ("yes", "the opset-16 form; opset-20 mode names not confirmed"),
        "NPU (typical)": ("no", "not supported by RKNN-Toolkit2 1.6/2.1 or Kneron; not listed for Orin DLA"),
    },
    "LayerNormalization": {
        "TensorRT 8.4": ("no", "opset-17 op; 8.4 parses up to opset 13"),
        "TensorRT 8.5+": ("partial", "8.6+ only (8.5 matrix: N)"),
        "TensorRT 10": ("yes", "only the first output Y"),
        "NPU (typical)": ("partial", _RKNN2 + "; Kneron: KL730 only; Orin DLA: reconstruction"),
    },
    "Mod": {
        "TensorRT 8.4": ("no", "not supported before 8.5"),
        "NPU (typical)": ("partial", _RKNN2 + "; Kneron: no"),
    },
    "Not": {"NPU (typical)": ("no", "not supported by RKNN-Toolkit2 1.6/2.1 or Kneron")},
    "Xor": {"NPU (typical)": ("no", "not supported by RKNN-Toolkit2 1.6/2.1 or Kneron")},
    "TopK": {
        "TensorRT 8.4": _TOPK_TRT8,
        "TensorRT 8.5+": _TOPK_TRT8,
        "TensorRT 10": ("yes", "sorted=1 and K < 3840 (keep --top-k below 3840)"),
        "NPU (typical)": ("no", "not supported by RKNN-Toolkit2 1.6/2.1 or Kneron; not listed for Orin DLA"),
    },
    "Slice": {"NPU (typical)": ("partial", _B1)},
    "Softmax": {"NPU (typical)": ("partial", _B1)},
    "Tile": {"NPU (typical)": ("partial", _B1 + ", no broadcast")},
    "QuantizeLinear": {"TensorRT 8.4": _QDQ_TRT, "TensorRT 8.5+": _QDQ_TRT, "TensorRT 10": _QDQ_TRT,
                       "NPU (typical)": ("yes", "RKNN imports Q/DQ; Kneron: no")},
    "DequantizeLinear": {"TensorRT 8.4": _QDQ_TRT, "TensorRT 8.5+": _QDQ_TRT, "TensorRT 10": _QDQ_TRT,
                         "NPU (typical)": ("yes", "RKNN imports Q/DQ; Kneron: no")},
}

MEASURED_FILE = "portability_measured.json"


def _measured_entry(row: dict[str, Any], date: str | None) -> dict[str, Any]:
    """One result of benchmarks/portability.py as {"result", "note", "tool", "date", ...the raw numbers}."""
    tools = ", ".join(f"{k} {v}" for k, v in (row.get("tools") or {}).items() if v)
    error = (row.get("error") or {}).get("first_line", "")
    if row.get("runs"):
        parity, latency = row.get("parity") or {}, row.get("latency_ms") or {}
        result = "runs, parity " + ("passed" if parity.get("passed") else "FAILED")
        note = (f"max abs logits {parity.get('logits_max_abs', float('nan')):.2g}, pred_boxes "
                f"{parity.get('pred_boxes_max_abs', float('nan')):.2g} (limit {parity.get('threshold', 1e-4):.0e}); "
                f"{latency.get('median', float('nan')):.0f} ms median, {latency.get('threads')} threads")
        if row.get("precision") not in (None, "f32"):
            note += f"; ran in {row['precision']}"
    else:
        result = "converts, does not run" if row.get("converts") else "does not convert"
        note = error
    return {"result": result, "note": f"{note} [{tools}; {date}]" if tools else note, "tool": tools, "date": date,
            **{k: row.get(k) for k in ("converts", "runs", "precision", "parity", "latency_ms", "error")}}


def row_sampler(row: dict[str, Any]) -> str:
    """The sampler a measured row ran: recorded since the gather bilinear op; before it, ``default`` was
    written with GridSample and ``discrete`` with a nearest-cell gather."""
    if row.get("sampler"):
        return row["sampler"]
    return "gather-nearest" if row.get("method") == "discrete" else "gridsample-bilinear"


def _load_measured() -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    """(MEASURED, MEASURED_SOURCE) from the package's copy of benchmarks/results/portability/portability.json."""
    try:
        text = resources.files("rtdetr_export.export").joinpath(MEASURED_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):  # an install without the package data
        return {}, {}
    data = json.loads(text)
    entries = {(row["target"], row_sampler(row)): _measured_entry(row, data.get("date"))
               for row in data.get("results", [])}
    return entries, {"date": data.get("date"), "model": data.get("model"), "command": data.get("command")}


def _load_fixture_measured() -> dict[str, Any]:
    """The fixture matrix (single file and split artifact on the edge runtimes) from the same package file."""
    try:
        text = resources.files("rtdetr_export.export").joinpath(MEASURED_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return {}
    return json.loads(text).get("fixture") or {}


# Results of real conversions, keyed by (target, sampler), e.g. ("OpenVINO CPU (f32)", "gather-nearest"): written by
# benchmarks/portability.py (never by hand) into portability_measured.json next to this module. Targets here
# are runtimes as run (a converter + a runtime + its settings), not the documented columns of TABLE.
# `rtdetr-export inspect` shows the entries for a file's sampler.
MEASURED: dict[tuple[str, str], dict[str, Any]]
MEASURED_SOURCE: dict[str, Any]  # date, model and command of the measurement
MEASURED, MEASURED_SOURCE = _load_measured()
FIXTURE_MEASURED: dict[str, Any] = _load_fixture_measured()  # date, command, model, results (one row per run)


# -- edge runtimes: what the fixture matrix measured per artifact kind -------------------------------------------------
# benchmarks/portability_fixture.py runs the trained fixture's single file and split artifact on each edge runtime
# (converter + runtime, FP and INT8) and records the verdicts and AP; that matrix is the evidence `inspect` cites.
# The split's decoder graph runs on ncnn only in the GridSample layout (ncnn has no Gather by an index tensor; the
# split export writes that sampler's cross-attention in rank-4 tensors, ncnn's limit), so there the split must be
# exported with GridSample; the other runtimes take any sampler's split.
SPLIT_SAMPLER_NEEDED = {"ncnn": "gridsample-bilinear"}
SAMPLER_FLAG = {"gridsample-bilinear": "--bilinear-op gridsample"}


def _row_works(row: dict[str, Any]) -> bool:
    """A measured row that ran and passed its own test: FP32 parity, or agreement for reduced precision."""
    if not row.get("runs"):
        return False
    check = row.get("parity") if row.get("precision") == "fp32" else row.get("agreement")
    return bool((check or {}).get("passed"))


def _row_summary(row: dict[str, Any]) -> str:
    if not row.get("converts") or not row.get("runs"):
        stage = "does not convert" if not row.get("converts") else "does not run"
        return f"{row.get('precision')}: {stage} ({((row.get('error') or {}).get('first_line') or '')[:120]})"
    ap = (row.get("AP") or {}).get("AP")
    tested = "parity" if row.get("precision") == "fp32" else "agreement"
    return (f"{row.get('precision')}: runs, {tested} {'passed' if _row_works(row) else 'FAILED'}"
            + (f", fixture AP {ap:.4f} ({row.get('AP_delta', 0.0):+.4f})" if ap is not None else ""))


def measured_sampler(kind: str) -> str | None:
    """The sampler of the fixture matrix's artifact of ``kind`` (its description names the export)."""
    text = str((FIXTURE_MEASURED.get("model") or {}).get("artifacts", {}).get(kind, ""))
    if "gridsample" in text:
        return "gridsample-bilinear"
    return next((name for name in ("gather-bilinear", "gather-nearest") if name in text), None)


def edge_expectations(kind: str, sampler: str | None, model: str = "--model <your model>") -> list[dict[str, Any]]:
    """Per edge runtime of the fixture matrix: whether an artifact of ``kind`` ("single" or "split") with
    ``sampler`` is expected to run there (True/False: a measured row of that kind and sampler passed, or the split
    lacks the sampler the runtime needs; None: measured with another sampler only), the measured rows, and, where
    it is not known to run, the export that made one that does (``model``: its model arguments)."""
    rows = FIXTURE_MEASURED.get("results", [])
    answers = []
    for runtime in dict.fromkeys(row["runtime"] for row in rows if row.get("runtime") != "onnxruntime"):
        mine = [row for row in rows if row["runtime"] == runtime and row.get("artifact") == kind]
        needed = SPLIT_SAMPLER_NEEDED.get(runtime)
        expected: bool | None = any(_row_works(row) for row in mine)
        if kind == "split" and needed and sampler != needed:
            expected = False
        elif sampler != measured_sampler(kind):
            expected = None
        split_works = any(_row_works(row) for row in rows if row["runtime"] == runtime and row["artifact"] == "split")
        fix = None
        if expected is not True and split_works:
            flag = SAMPLER_FLAG.get(needed or measured_sampler("split") or "", "")
            fix = f"rtdetr-export onnx {model} --split {flag}".rstrip()
        answers.append({"target": mine[0]["target"] if mine else runtime, "runtime": runtime, "kind": kind,
                        "expected": expected, "measured": [_row_summary(row) for row in mine], "fix": fix})
    return answers


def verdict(op: str, target: str) -> dict[str, str]:
    """{"verdict": ..., "note": ...} for one op on one target."""
    if op not in TABLE:
        return {"verdict": "unknown", "note": "op not in the portability table"}
    value, note = TABLE[op].get(target, ("yes", ""))
    return {"verdict": value, "note": note}


def portability_rows(census: dict[str, int]) -> list[dict[str, Any]]:
    """One row per op in ``census``: {"op", "count", "support": {target: {"verdict", "note"}}}."""
    return [{"op": op, "count": count, "support": {t: verdict(op, t) for t in TARGETS}}
            for op, count in census.items()]


def blockers(census: dict[str, int]) -> dict[str, list[str]]:
    """Per target, the ops of ``census`` documented as unsupported ("no")."""
    return {t: [op for op in census if verdict(op, t)["verdict"] == "no"] for t in TARGETS}


def opset_warnings(opset: int | None) -> dict[str, str]:
    """Per target, a warning when the file's opset is above the highest one the target documents."""
    if opset is None:
        return {}
    return {t: f"opset {opset} is above {m}, the highest documented for {_OPSET_NOTE[t]}"
            for t, m in MAX_OPSET.items() if m is not None and opset > m}


def measured(sampler: str | None) -> list[dict[str, Any]]:
    """The MEASURED entries for ``sampler`` ("gridsample-bilinear", "gather-bilinear", "gather-nearest"; none when
    unknown)."""
    return [{"target": t, "sampler": s, **entry} for (t, s), entry in MEASURED.items() if s == sampler]


def markdown_table(ops: list[str] | None = None) -> str:
    """The table (all ops, or ``ops``) as markdown, with notes as footnotes."""
    ops = ops or sorted(TABLE, key=str.lower)
    lines = ["| op | " + " | ".join(TARGETS) + " |", "|---" * (len(TARGETS) + 1) + "|"]
    notes: list[str] = []
    for op in ops:
        cells = []
        for target in TARGETS:
            entry = verdict(op, target)
            cell = entry["verdict"]
            if entry["note"]:
                notes.append(f"{op} / {target}: {entry['note']}")
                cell += f" [{len(notes)}]"
            cells.append(cell)
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines += ["", "Notes:", ""] + [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


def _main() -> None:
    print(markdown_table())
    print("\nSources:\n")
    for target in TARGETS:
        print(f"- {target}:")
        for source in SOURCES[target]:
            print(f"  - {source}")


if __name__ == "__main__":
    _main()
