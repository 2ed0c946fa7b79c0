"""``debug_precision``: which layers break an FP16/INT8 artifact, and the smallest set to keep in float.

Users bisect this by hand with Polygraphy (lyuwenyu/RT-DETR#227). Here, from the artifact's provenance:

1. Re-export its FP32 graph with the graph options its record holds (``record.graph_options()``: the same
   opset, batch, head, sampler and size range) and rebuild its PyTorch reference.
2. Layer-wise: run both graphs on calibration images with every intermediate tensor marked
   (verify/layerwise.py) and rank the reduced-precision nodes by the error they add, each named with its
   RT-DETR part (model/parts.py).
3. Judge the artifact as verification does (its precision's agreement limits, the same images). If it fails,
   search over the parts of the worst nodes, ranked: bisect the shortest ranked prefix whose parts kept in
   float pass, then drop every part that is not needed (each dropped one re-checked). Each candidate is the
   artifact's recipe plus ``--int8-exclude`` (a part whose worst node is INT8) or ``--keep-fp32`` (FP16)
   patterns, converted from the FP32 graph and verified.

The result is typed (``PrecisionDebug``) and names the exact flags.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import onnx

from rtdetr_export.artifact import OnnxRecord, PrecisionOptions, load_onnx, open_artifact
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.torch_export import ExportedGraph, export_graph
from rtdetr_export.pipeline.verification import reference_model
from rtdetr_export.precision import apply_precision
from rtdetr_export.precision.calibration import calibration_set
from rtdetr_export.verify import Verification, VerificationPlan, choose_inputs, thresholds_for, verify_onnx
from rtdetr_export.verify.layerwise import LayerError, first_jump, layer_errors

Log = Callable[[str], None]
DEFAULT_CANDIDATES = 8


@dataclass
class Trial:
    """One candidate recipe and how it verified."""

    parts: list[str]
    passed: bool
    failures: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"parts": self.parts, "passed": self.passed, "failures": self.failures}


@dataclass
class PrecisionDebug:
    """What ``debug-precision`` found: ranked layers, the first jump, the search and the flags."""

    artifact: str
    precision: str
    layers: list[LayerError]                         # reduced-precision nodes, worst added error first
    first_jump: LayerError | None
    parts: list[dict[str, Any]]                      # ranked candidate parts: label, flag, pattern, error
    baseline: Trial
    trials: list[Trial] = field(default_factory=list)
    float_parts: list[str] | None = None             # the set found (None: none found / not needed)
    flags: list[str] = field(default_factory=list)   # the extra flags that keep float_parts in float
    command_flags: str = ""                          # the artifact's precision flags plus ``flags``, shell-quoted

    @property
    def passed(self) -> bool:
        """The artifact passes as it is, or a float set that passes was found."""
        return self.baseline.passed or self.float_parts is not None

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "precision": self.precision, "passed": self.passed,
                "first_jump": self.first_jump.to_json() if self.first_jump else None,
                "layers": [row.to_json() for row in self.layers], "parts": self.parts,
                "baseline": self.baseline.to_json(), "trials": [t.to_json() for t in self.trials],
                "float_parts": self.float_parts, "flags": self.flags, "command_flags": self.command_flags}


def fp32_graph(model, record: OnnxRecord, log: Log) -> ExportedGraph:
    """The FP32 graph an FP16/INT8 artifact was converted from: re-exported with the graph options its record
    holds (same sampler, size range, batch, head, opset and simplification), so every comparison and every
    re-conversion starts from the graph the artifact came from."""
    options = record.graph_options()
    log(f"[1/3] re-exporting the FP32 graph (opset {options.opset}, {options.head} head, {record.sampler}"
        + (f", dynamic size {record.input_size_range}" if record.input_size_range else "") + ")")
    return export_graph(model, options)


def precision_flags(options: PrecisionOptions) -> list[str]:
    """The CLI flags that reproduce ``options`` (calibration images aside)."""
    flags = ["--precision", options.target, "--calib-count", str(options.calib_count)]
    if options.target == "int8":
        flags += ["--calib-method", options.calib_method, "--int8-target", options.int8_target]
        if options.int8_target == "tensorrt":
            flags += ["--int8-float", options.int8_float]
        if not options.int8_default_exclusions:
            flags.append("--no-int8-default-exclusions")
        for pattern in options.int8_exclude:
            flags += ["--int8-exclude", pattern]
    for pattern in options.keep_fp32:
        flags += ["--keep-fp32", pattern]
    return flags


def rank_parts(rows: list[LayerError], limit: int) -> list[dict[str, Any]]:
    """Parts of the reduced nodes, worst added error first, each with the flag that keeps it in float."""
    best: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: -r.introduced):
        if row.precision == "fp32" or not row.pattern or row.part in best:
            continue
        flag = "--int8-exclude" if row.precision == "int8" else "--keep-fp32"
        best[row.part] = {"part": row.part, "flag": flag, "pattern": row.pattern, "worst_node": row.node,
                          "introduced": row.introduced, "error": row.error}
    return list(best.values())[:limit]


def _with_parts(base: PrecisionOptions, parts: list[dict[str, Any]]) -> PrecisionOptions:
    exclude = tuple(p["pattern"] for p in parts if p["flag"] == "--int8-exclude")
    keep = tuple(p["pattern"] for p in parts if p["flag"] == "--keep-fp32")
    return replace(base, int8_exclude=base.int8_exclude + exclude, keep_fp32=base.keep_fp32 + keep)


def _checked_record(artifact: str | Path, count: int, max_parts: int, limits: str | None) -> OnnxRecord:
    """The artifact's record, after refusing what debug-precision cannot compare, before any work."""
    if count < 1 or max_parts < 1:
        raise RTDetrExportError("--count and --max-parts must be at least 1")
    record = open_artifact(artifact)
    precision = record.precision
    if not isinstance(record, OnnxRecord) or precision not in ("fp16", "int8") or record.recipe is None:
        raise RTDetrExportError(f"{artifact} is {precision}: debug-precision compares an FP16 or INT8 ONNX file "
                                "with FP32")
    if limits not in (None, "fp16", "int8"):
        raise RTDetrExportError(f"--limits must be fp16 or int8, got {limits!r}")
    if record.static_batch not in (None, 1):
        raise RTDetrExportError("debug-precision needs a batch-1 or dynamic-batch artifact")
    return record


def _smallest_passing(ranked: list[dict[str, Any]], trial: Callable[[list[dict[str, Any]]], bool]
                      ) -> list[dict[str, Any]] | None:
    """A small set of ``ranked`` parts whose float copy passes ``trial``: the shortest passing prefix (binary
    search; passing grows with the prefix), then each earlier part dropped where the rest still passes. None when
    even all of them fail."""
    if not ranked or not trial(ranked):
        return None
    low, high = 0, len(ranked)  # ranked[:high] passes; ranked[:low] is not known to
    while high - low > 1:
        middle = (low + high) // 2
        if trial(ranked[:middle]):
            high = middle
        else:
            low = middle
    chosen = list(ranked[:high])
    for part in reversed(ranked[:high - 1]):  # the last one added is needed: without it the prefix failed
        fewer = [p for p in chosen if p is not part]
        if trial(fewer):
            chosen = fewer
    return chosen


def debug_precision(artifact: str | Path, model_path: str | None = None, calib_images: str | None = None,
                    images: str | None = None, count: int = 4, max_parts: int = DEFAULT_CANDIDATES,
                    limits: str | None = None, log: Log = lambda message: None) -> PrecisionDebug:
    """Rank the layers that break ``artifact`` and search the smallest set of parts to keep in float.

    ``limits``: judge by another precision's limits (``fp16``: an INT8 file that must agree as FP16 does);
    default the artifact's own.
    """
    record = _checked_record(artifact, count, max_parts, limits)
    precision = record.precision
    thresholds = thresholds_for(limits or precision)
    base = record.recipe.options(calib_images)
    model = reference_model(record, model_path, log)
    head, size = record.head, model.config.image_size
    fp32 = fp32_graph(model, record, log)

    calibration = calibration_set(size, count, calib_images)
    log(f"[2/3] comparing every layer with FP32 on {len(calibration.images)} {calibration.source} images")
    rows = layer_errors(fp32.graph, load_onnx(artifact), calibration.feeds(head))
    reduced = sorted((r for r in rows if r.precision != "fp32"), key=lambda r: -r.introduced)
    ranked = rank_parts(rows, max_parts)
    # Judged as `verify` judges: --images, else the held-out part of --calib-images (the trials calibrate on its
    # first images), else what judged the artifact when it was made.
    recorded = record.verification.inputs if record.verification else None
    inputs = choose_inputs(images, calib_images, base.calib_count, recorded, precision, log)
    plan = VerificationPlan.for_graph(record.graph_options(), size, inputs)

    def verify(model_proto: onnx.ModelProto) -> Verification:
        with tempfile.TemporaryDirectory(prefix="rtdetr-export-debug-") as tmp:
            path = Path(tmp) / "candidate.onnx"
            onnx.save(model_proto, str(path))
            return verify_onnx(model, path, plan, precision, thresholds=thresholds)

    log(f"[3/3] verifying the artifact ({limits or precision} limits), then searching over {len(ranked)} parts")
    checked = verify(load_onnx(artifact))
    result = PrecisionDebug(str(artifact), precision, reduced, first_jump(rows), ranked,
                            Trial([], checked.passed, checked.failures))
    if checked.passed:
        log("the artifact is within its limits: nothing to keep in float")
        return result

    def trial(parts: list[dict[str, Any]]) -> bool:
        options = _with_parts(base, parts)
        converted = apply_precision(fp32.graph, head, size, options).model
        verification = verify(converted)
        labels = [p["part"] for p in parts]
        result.trials.append(Trial(labels, verification.passed, verification.failures))
        log(f"  {'pass' if verification.passed else 'fail'}: {len(parts)} parts in float "
            f"({', '.join(labels) or 'none'})")
        return verification.passed

    chosen = _smallest_passing(ranked, trial)
    if chosen is None:
        log("no set of the ranked parts passes; raise --max-parts or check the recipe")
        return result
    result.float_parts = [p["part"] for p in chosen]
    result.flags = [token for p in chosen for token in (p["flag"], p["pattern"])]
    result.command_flags = shlex.join(precision_flags(_with_parts(base, chosen)))
    return result
