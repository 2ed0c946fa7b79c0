"""``select_artifact``: make every CPU candidate, time them in one interleaved run, score their AP, and write the
fastest one within the AP budget with a sidecar that records why."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rtdetr_export.artifact import (ArtifactRecord, OpenVinoRecord, ir_weights_path, make_feed, open_artifact,
                                    read_sidecar, sidecar_path, write_sidecar)
from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT
from rtdetr_export.artifact.records import SelectionRecord
from rtdetr_export.backends import Runner, artifact_runner
from rtdetr_export.bench.machine import load_average, machine_info
from rtdetr_export.bench.parity import parity
from rtdetr_export.bench.timing import Rounds, interleaved, timed
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.eval import EvalOptions, EvalSet, detector_metrics, map_categories, prepare_eval_set
from rtdetr_export.files import atomic_outputs, check_output
from rtdetr_export.imaging import load_image, preprocess_batch
from rtdetr_export.model import RTDETRv2
from rtdetr_export.pipeline import Detector
from rtdetr_export.select.candidates import CPU_CANDIDATES, BuildContext, Candidate
from rtdetr_export.select.pareto import Point, choose, pareto_front, within_budget
from rtdetr_export.select.report import SelectReport, SelectRow
from rtdetr_export.stats import summarize, throughput
from rtdetr_export.verify import judged_precision
from rtdetr_export.verify.reference import ReferenceRunner

Log = Callable[[str], None]


@dataclass
class SelectOptions:
    """``rtdetr-export select``'s flags (the model and the output come separately)."""

    annotations: str
    images: str
    max_ap_drop: float = 0.005
    calib_images: str | None = None  # None: calibrate on ``images``
    calib_count: int = DEFAULT_CALIBRATION_COUNT
    batch: int = 4  # the throughput batch, timed beside batch 1
    iters: int = 10
    warmup: int = 2
    threads: int | None = None
    limit: int | None = None  # AP on the first N annotated images only
    settle_ms: float = Rounds.settle_ms  # pause before each call while the candidates take turns (bench/timing.py)
    candidates: tuple[Candidate, ...] = CPU_CANDIDATES

    def validate(self) -> None:
        """Raise RTDetrExportError for values no run can use, before any work."""
        if not -1.0 < self.max_ap_drop < 1.0:
            raise RTDetrExportError(f"--max-ap-drop is an AP difference between -1 and 1, got {self.max_ap_drop}")
        for value, name in ((self.batch, "--batch"), (self.iters, "--iters"), (self.calib_count, "--calib-count")):
            if value < 1:
                raise RTDetrExportError(f"{name} must be at least 1, got {value}")
        if self.warmup < 0:
            raise RTDetrExportError(f"--warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise RTDetrExportError(f"--threads must be >= 1, got {self.threads}")
        if self.settle_ms < 0:
            raise RTDetrExportError(f"--settle-ms must be >= 0, got {self.settle_ms}")
        if not self.candidates:
            raise RTDetrExportError("no candidate to compare")

    @property
    def eval_options(self) -> EvalOptions:
        return EvalOptions(self.annotations, self.images, 1, self.limit)

    def check_dataset(self) -> EvalSet:
        """The annotations and the folder, checked before the model loads (one-line errors)."""
        self.validate()
        self.eval_options.validate()
        return prepare_eval_set(self.eval_options, None)


OUTPUT_SUFFIXES = (".onnx", ".xml")


def output_files(output: str | Path, suffix: str) -> tuple[Path, ...]:
    """The files ``-o output`` becomes when the chosen artifact's format has ``suffix``: ``output``'s stem with that
    suffix, so ``-o best.onnx`` is best.onnx + best.json for an ONNX file and best.xml + best.bin + best.xml.json
    for an OpenVINO IR (and ``-o best.xml`` the same two sets): the user names where the choice goes, the choice
    names its format."""
    path = Path(output).with_suffix(suffix)
    return (path, ir_weights_path(path), sidecar_path(path)) if suffix == ".xml" else (path, sidecar_path(path))


def check_outputs(output: str | Path | None, force: bool,
                  suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> dict[str, tuple[Path, ...]] | None:
    """Every file the choice may write, per format suffix (``output_files``), refused up front if one exists
    without ``force`` (which candidate wins is known only at the end)."""
    if output is None:
        return None
    if Path(output).suffix not in OUTPUT_SUFFIXES:
        raise RTDetrExportError(f"{output}: output file name must end in .onnx or .xml (the chosen artifact is "
                                "written under its stem with its own format's suffix)")
    return {suffix: tuple(check_output(path, force) for path in output_files(output, suffix))
            for suffix in dict.fromkeys(suffixes)}


def select_artifact(model: RTDETRv2, options: SelectOptions, output: str | Path | None = None, force: bool = False,
                    log: Log = lambda message: None) -> SelectReport:
    """Measure every candidate on this machine and write the fastest within ``options.max_ap_drop`` AP of the
    first (the baseline) to ``output`` with its selection record; ``report.chosen`` is None when none is."""
    started, load_before = time.time(), load_average()
    outputs = check_outputs(output, force, tuple(c.artifact.suffix for c in options.candidates))
    options = resolved(options)
    dataset = options.check_dataset()
    dataset.coco.class_to_category = map_categories(dataset.coco, list(model.config.class_names))
    if dataset.skipped:  # as eval: measured on the rest, and said (the report's dataset counts both)
        log(f"warning: {len(dataset.skipped)} annotated image(s) are not in {options.images} (first: "
            f"{dataset.skipped[0]}); AP is measured on the other {len(dataset.images)}")
    with tempfile.TemporaryDirectory(prefix="rtdetr-select-") as tmp:
        paths = [dataset.coco.image_path(entry) for entry in dataset.images]
        rows = measure_latency(model, options, paths, Path(tmp), log)
        _evaluate(options, rows, dataset, log)
        report = _report(options, rows, dataset, started, load_before)
        if report.chosen and outputs:
            written = _write_chosen(report, options, outputs)
            report.written = str(written[0])
            log(f"[select] wrote {', '.join(str(p) for p in written)}"
                + (f" (an OpenVINO IR won: -o {output} names its stem)" if written[0].suffix != Path(output or "")
                   .suffix else ""))
    return report


def resolved(options: SelectOptions) -> SelectOptions:
    """``options`` with each available candidate's runtime hint as used on this CPU (Runtime.resolved): the rows,
    the runners and the records then name the hint that ran."""
    candidates = tuple(c if c.unavailable() else c.resolved() for c in options.candidates)
    return dataclasses.replace(options, candidates=candidates)


def measure_latency(model: RTDETRv2, options: SelectOptions, images: list[Path], folder: Path,
                    log: Log = lambda message: None) -> list[SelectRow]:
    """Make every candidate's artifact in ``folder`` and time them all in one interleaved run on ``images`` (the
    first, and the first ``options.batch``): the rows, with latency and parity but no AP yet."""
    options = resolved(options)
    rows = [SelectRow(c.name, c.artifact.name, c.runtime.backend, c.runtime.hint) for c in options.candidates]
    for row, candidate in zip(rows, options.candidates):
        reason = candidate.unavailable()
        if reason:
            row.status, row.reason = "skipped", reason
            log(f"[select] skipping {row.name}: {reason}")
        else:
            row.note = candidate.runtime.note() or ""
    context = BuildContext(model, folder, options.calib_images or options.images, options.calib_count,
                           options.images, log)
    _build(options.candidates, rows, context, log)
    _time(model, options, rows, images, log)
    return rows


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def _build(candidates: tuple[Candidate, ...], rows: list[SelectRow], context: BuildContext, log: Log) -> None:
    """Make each recipe the runnable candidates name, once; a recipe that fails fails its candidates."""
    recipes = {c.artifact.name: c.artifact for c, r in zip(candidates, rows) if r.status == "ok"}
    made: dict[str, Path | str] = {}
    for i, (name, recipe) in enumerate(recipes.items(), 1):
        log(f"[select] [{i}/{len(recipes)}] making {name} ({recipe.description})")
        try:
            made[name] = recipe.make(context)
        except (RTDetrExportError, RuntimeError, ValueError) as exc:  # one recipe's failure is a row, not the run
            made[name] = _failure(exc)
            log(f"  {name} failed: {made[name]}")
    for row in rows:
        result = made.get(row.artifact)
        if row.status != "ok" or result is None:
            continue
        if isinstance(result, str):
            row.status, row.reason = "failed", f"making {row.artifact}: {result}"
            continue
        record = open_artifact(result)
        files = (result, ir_weights_path(result)) if isinstance(record, OpenVinoRecord) else (result,)
        row.path, row.size_bytes = str(result), sum(f.stat().st_size for f in files)
        if record.verification is None:
            row.verified = "not verified"
        else:
            row.verified_passed = record.verification.passed
            row.verified = f"{'pass' if row.verified_passed else 'FAIL'} ({record.precision})"


def _runner(row: SelectRow, candidate: Candidate, threads: int | None) -> Runner:
    path = Path(row.path or "")
    return artifact_runner(path, open_artifact(path), candidate.runtime.graph_runner(threads))


def _time(model: RTDETRv2, options: SelectOptions, rows: list[SelectRow], paths: list[Path], log: Log) -> None:
    """Batch 1 and the throughput batch, every runnable candidate in one interleaved run (bench's loop, its pause
    before each call); each runner's batch-1 outputs are judged against the PyTorch reference on the way."""
    by_name = {c.name: c for c in options.candidates}
    runners: dict[str, Runner] = {}
    for row in (r for r in rows if r.status == "ok"):
        try:
            runner = _runner(row, by_name[row.name], options.threads)
            runner.activate()
            runners[row.name] = runner
        except Exception as exc:  # a runtime that refuses a file (OpenVINO and some Q/DQ graphs) is a row
            row.status, row.reason = "failed", f"load: {_failure(exc)}"
            log(f"  {row.name}: {row.reason}")
    if not runners:
        return
    opened = dict(runners)
    head = open_artifact(next(r.path for r in rows if r.name in runners)).head
    size = tuple(model.config.image_size)
    reference = ReferenceRunner(model, head)
    reference.activate()
    row_of = {r.name: r for r in rows}
    for batch in dict.fromkeys((1, options.batch)):
        pictures = [load_image(paths[i % len(paths)]) for i in range(batch)]
        feed = make_feed(head, preprocess_batch(pictures, size), [(p.height, p.width) for p in pictures])
        want = reference.infer(feed) if batch == 1 else None
        active: dict[str, Runner] = {}
        for name, runner in runners.items():
            row = row_of[name]
            try:
                got = timed(lambda: runner.infer(feed))[1]
                for _ in range(options.warmup):
                    runner.infer(feed)
            except Exception as exc:  # a runner that fails at this batch is reported, the others go on
                row.status, row.reason = "failed", f"batch {batch}: {_failure(exc)}"
                log(f"  {name}: {row.reason}")
                continue
            if want is not None:
                precision = judged_precision(open_artifact(Path(row.path or "")).precision, row.hint)
                row.parity = parity(head, feed, want, got, precision, reference)
            active[name] = runner
        log(f"[select] batch {batch}: timing {', '.join(active)} in {options.iters} interleaved rounds")
        samples = interleaved(active, feed, Rounds(options.iters, settle_ms=options.settle_ms),
                              progress=lambda done: log(f"  round {done}") if done % 5 == 0 else None)
        for name, values in samples.items():
            row = row_of[name]
            row.samples_ms[batch], row.latency_ms[batch] = values, summarize(values)
            row.throughput_ips[batch] = throughput(batch, row.latency_ms[batch]["mean"])
        runners = active
    for runner in opened.values():
        runner.deactivate()
    reference.deactivate()


def _evaluate(options: SelectOptions, rows: list[SelectRow], dataset: EvalSet, log: Log) -> None:
    """COCO AP of each timed candidate through its own runner (eval's code: one image per call)."""
    by_name = {c.name: c for c in options.candidates}
    for row in (r for r in rows if r.status == "ok" and r.latency_ms):
        log(f"[select] AP of {row.name} on {len(dataset.images)} images")
        try:
            detector = Detector.from_artifact(row.path or "", by_name[row.name].runtime.graph_runner(options.threads))
            metrics = detector_metrics(detector, dataset, 1, log)
        except Exception as exc:  # as in timing: a runtime's failure is the row's, not the run's
            row.status, row.reason = "failed", f"eval: {_failure(exc)}"
            log(f"  {row.name}: {row.reason}")
            continue
        row.ap, row.ap50 = metrics.stats["AP"], metrics.stats["AP50"]


def _report(options: SelectOptions, rows: list[SelectRow], dataset: EvalSet, started: float,
            load_before: list[float] | None) -> SelectReport:
    baseline = rows[0]
    if not baseline.measured:
        raise RTDetrExportError(f"the baseline {baseline.name} could not be measured ({baseline.status}: "
                                f"{baseline.reason or 'no AP'}); the AP budget counts from it")
    measured = [r for r in rows if r.measured]
    for row in measured:
        row.ap_delta = (row.ap or 0.0) - (baseline.ap or 0.0)
    points = [Point(r.name, r.p50(1) or 0.0, r.ap or 0.0, r.trusted) for r in measured]
    front = pareto_front(points)
    for row, point in zip(measured, points):
        row.on_front = point.name in front
        row.within_budget = within_budget(point, baseline.ap or 0.0, options.max_ap_drop)
    choice = choose(points, baseline.ap or 0.0, options.max_ap_drop)
    settings = {"threads": options.threads, "iters": options.iters, "warmup": options.warmup,
                "settle_ms": options.settle_ms, "calib_images": options.calib_images or options.images,
                "calib_count": options.calib_count, "eval_batch": 1,
                "candidates": [{"name": c.name, "artifact": c.artifact.name, "artifact_description":
                                c.artifact.description, "runtime": c.runtime.label} for c in options.candidates]}
    return SelectReport(rows, options.max_ap_drop, baseline.name, (1, options.batch), settings,
                        dataset.info(options.limit), machine_info(),
                        {"wall_s": round(time.time() - started, 1), "load_average_start": load_before,
                         "load_average_end": load_average()},
                        front, choice.chosen, choice.closest, choice.shortfall)


def _sidecar_record(source: Path) -> ArtifactRecord:
    """The record in the artifact's sidecar: an IR's (its only record), or an ONNX file's sidecar copy of the one in
    its metadata."""
    return open_artifact(source) if source.suffix == ".xml" else read_sidecar(sidecar_path(source))


def _write_chosen(report: SelectReport, options: SelectOptions,
                  outputs: dict[str, tuple[Path, ...]]) -> tuple[Path, ...]:
    """A copy of the chosen artifact (an ONNX file, or an IR's .xml and .bin) under the output's stem with its
    format's suffix, and its sidecar: the artifact's record plus the selection; the written paths."""
    row = report.row(report.chosen)
    assert row is not None and row.path is not None
    source = Path(row.path)
    paths = outputs[source.suffix]
    selection = SelectionRecord(
        row.name, row.backend, row.hint, options.max_ap_drop, report.baseline, report.baseline_ap or 0.0,
        str(options.annotations), int(report.dataset["images"]), report.batches, options.threads,
        str(report.machine["cpu"]["model"]), report.created, [r.result(options.batch) for r in report.rows])
    record = dataclasses.replace(_sidecar_record(source), selection=selection)
    if isinstance(record, OpenVinoRecord) and record.ir is not None:  # the sidecar names the IR's files
        record.ir = dataclasses.replace(record.ir, xml=paths[0].name, bin=paths[1].name)
    sources = (source, ir_weights_path(source)) if len(paths) == 3 else (source,)
    with atomic_outputs(list(paths)) as temps:
        for copied, temp in zip(sources, temps):
            shutil.copyfile(copied, temp)
        write_sidecar(temps[-1], record)
    return paths
