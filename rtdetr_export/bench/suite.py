"""``run_benchmark``: build or load what to measure, time every target x batch, and return the report dict."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from rtdetr_export.bench import report as report_module
from rtdetr_export.bench.artifacts import ONNX_KINDS, OPENVINO_KINDS, check_artifact
from rtdetr_export.bench.machine import load_average, machine_info
from rtdetr_export.artifact import make_feed
from rtdetr_export.bench.memory import PeakMemory
from rtdetr_export.bench.options import BenchOptions
from rtdetr_export.bench.parity import parity
from rtdetr_export.bench.peaks import PeakProbe
from rtdetr_export.bench.roofline import count_artifacts
from rtdetr_export.bench.sources import BenchModels, prepare_models
from rtdetr_export.bench.targets import (Target, expand_backends, onnxruntime_target, openvino_target,
                                         tensorrt_targets, torch_targets)
from rtdetr_export.bench.timing import (STAGES, Rounds, interleaved, interleaved_end_to_end, synchronizer, timed)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.imaging import list_images, load_image, preprocess_batch
from rtdetr_export.imaging.inputs import synthetic_images
from rtdetr_export.stats import summarize
from rtdetr_export.verify.reference import ReferenceRunner

Log = Callable[[str], None]
# Peak GEMM samples (bench/peaks.py): one call per precision after each of a batch's first rounds, and at least
# PEAK_SAMPLES in all; a few milliseconds each: about 0.7 s per batch with the pauses before and after the calls,
# and about 1 s to load the three runners (measured on the 2-core EPYC, docs/benchmarks.md "Roofline").
PEAK_ROUNDS_PER_BATCH = 3
PEAK_SAMPLES = 3
E2E_IMAGE_SIZE = (720, 1280)  # synthetic end-to-end inputs: a camera frame, so decode and resize cost something


def _image_files(options: BenchOptions, count: int, folder: Path) -> tuple[list[Path], str]:
    """``count`` image files for the end-to-end runs: the user's (cycled) or synthetic JPEG camera frames."""
    if options.images:
        found = list_images(options.images)
        return [found[i % len(found)] for i in range(count)], str(options.images)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, array in enumerate(synthetic_images(count, E2E_IMAGE_SIZE, seed=7)):
        path = folder / f"synthetic_{i}.jpg"
        Image.fromarray((array.transpose(1, 2, 0) * 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths, f"synthetic {E2E_IMAGE_SIZE[1]}x{E2E_IMAGE_SIZE[0]} JPEG"


def build_targets(options: BenchOptions, models: BenchModels, head: str) -> list[Target]:
    """Every row the report will have, runnable or skipped with a reason, reference first."""
    names = expand_backends(options.backends, options.device)
    targets = torch_targets(names, models.model, head, options.top_k, options.device)
    targets += models.peer_targets(names, options.device, head)
    if "onnxruntime" in names:
        onnx_files = [a for a in models.artifacts if a.kind in ONNX_KINDS]
        targets += [onnxruntime_target(a, options.device, options.threads, "peer" if a.label == "peer" else "ours")
                    for a in onnx_files]
    if "openvino" in names:
        targets += [openvino_target(a, hint, options.device, options.threads, "peer" if a.label == "peer" else "ours")
                    for a in models.artifacts if a.kind in OPENVINO_KINDS for hint in options.openvino]
    if "tensorrt" in names:
        targets += tensorrt_targets([a for a in models.artifacts if a.kind == "tensorrt"], options.device)
    return targets


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def run_benchmark(options: BenchOptions, log: Log = lambda message: None) -> dict[str, Any]:
    """Measure every target at every batch size; the JSON-ready report (see docs/benchmarks.md)."""
    options.validate()
    started, load_before = time.time(), load_average()
    artifacts = [check_artifact(path) for path in options.artifacts]
    heads = {a.head for a in artifacts}
    if len(heads) > 1:
        raise RTDetrExportError("the artifacts have different heads (raw and detections); benchmark them apart")
    head = heads.pop() if heads else options.head
    previous_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="rtdetr-bench-") as tmp:
            models = prepare_models(options, artifacts, head, Path(tmp), log)
            targets = build_targets(options, models, head)
            roofline = count_artifacts(models.artifacts, options.batches, models.model.config.image_size, log)
            measured = _measure(options, models, targets, head, Path(tmp), log)
            roofline.peaks, roofline.peak_seconds = measured["peaks"].result(), measured["peaks"].seconds
    finally:
        torch.set_num_threads(previous_threads)
    settings = {key: value for key, value in dataclasses.asdict(options).items()
                if key not in ("artifacts", "model_path", "preset", "method", "image_size", "note")}
    settings.update(head=head, interleaved=True, settle_ms=options.settle_ms,
                    torch_threads=torch.get_num_threads() if not options.threads else options.threads,
                    rounds=measured["rounds"], e2e_rounds=measured["e2e_rounds"], inputs=measured["inputs"], reference="torch-fp32-cpu (unfused model, verification's rules)")
    return report_module.assemble(
        note=options.note, machine=machine_info(), settings=settings, model=models.to_json(),
        targets=targets, results=measured["results"], roofline=roofline,
        timing={"wall_s": round(time.time() - started, 1), "load_average_start": load_before,
                "load_average_end": load_average()})


def _activate(targets: list[Target], device: str, log: Log) -> dict[str, Any]:
    runners = {}
    for target in targets:
        if target.skipped or target.make is None:
            continue
        try:
            runner = target.make()
            with PeakMemory(device, torch_allocator=target.backend == "torch") as memory:
                seconds = timed(runner.activate)[0] / 1000
            target.info.update(load_s=round(seconds, 3), load_memory=memory.result)
            providers = getattr(runner, "active_providers", None)
            if providers:
                target.info["active_providers"] = providers
            runners[target.name] = runner
        except Exception as exc:  # one broken backend must not take the whole report down
            target.skipped = f"failed to load: {_failure(exc)}"
            log(f"  {target.name}: {target.skipped}")
    return runners


def _first_runs(targets: list[Target], runners: dict, batch: int, feed: dict, reference: ReferenceRunner,
                head: str, options: BenchOptions, sync, log: Log) -> tuple[dict[str, dict[str, Any]], dict]:
    """Per target at this batch: the cold run (timed, and compared with the reference) and the warm-up,
    under a peak-memory probe. Returns the result entries and the runners that got through."""
    entries: dict[str, dict[str, Any]] = {}
    active = {}
    want = reference.infer(feed)
    for target in targets:
        entry = entries[target.name] = {"target": target.name, "batch": batch}
        if target.name not in runners:
            entry.update(status="skipped", reason=target.skipped or "not runnable")
            continue
        if not target.supports(batch):
            entry.update(status="skipped", reason=f"the artifact takes batch {target.artifact.batch_text} only")
            continue
        runner = runners[target.name]
        try:
            with PeakMemory(options.device, torch_allocator=target.backend == "torch") as memory:
                cold_ms, got = timed(lambda: runner.infer(feed), sync)
                for _ in range(options.warmup):
                    runner.infer(feed)
            entry.update(status="ok", cold_ms=cold_ms, memory=memory.result,
                         parity=parity(head, feed, want, got, target.precision, reference).to_json())
            active[target.name] = runner
        except Exception as exc:  # a backend that fails at this batch is reported, the others go on
            entry.update(status="failed", reason=_failure(exc))
            log(f"  {target.name} at batch {batch}: {entry['reason']}")
    return entries, active


def _measure(options: BenchOptions, models: BenchModels, targets: list[Target], head: str, tmp: Path,
             log: Log) -> dict[str, Any]:
    size = models.model.config.image_size
    paths, source = _image_files(options, max(options.batches), tmp / "images")
    sync = synchronizer(options.device)
    reference = ReferenceRunner(models.model, head, options.top_k)
    reference.activate()
    log(f"[bench] loading {sum(1 for t in targets if not t.skipped)} runner(s) on {options.device}")
    runners = _activate(targets, options.device, log)
    # The peak GEMMs run between the rows' calls, in the first rounds of every batch: same load, same settings.
    peaks = PeakProbe(tmp / "peaks", options.threads, settle_ms=options.settle_ms)
    peaks.activate()
    results, rounds_done, e2e_done = [], {}, {}
    for batch in options.batches:
        pictures = [load_image(p) for p in paths[:batch]]
        feed = make_feed(head, preprocess_batch(pictures, size), [(p.height, p.width) for p in pictures])
        entries, active = _first_runs(targets, runners, batch, feed, reference, head, options, sync, log)
        if not active:
            results += list(entries.values())
            continue
        log(f"[bench] batch {batch}: timing {', '.join(active)} in interleaved rounds")
        stages: dict[str, dict[str, list[float]]] = {}
        samples = interleaved(active, feed, Rounds(options.iters, options.seconds, settle_ms=options.settle_ms), sync,
                              progress=lambda done: _round_done(done, peaks, log), stages=stages)
        rounds_done[batch] = len(next(iter(samples.values())))
        e2e_count = options.e2e_iters if options.e2e_iters is not None else max(2, rounds_done[batch] // 3)
        e2e_done[batch] = e2e_count
        if e2e_count:
            log(f"[bench] batch {batch}: {e2e_count} end-to-end round(s) (decode, preprocess, infer, postprocess)")
        e2e = interleaved_end_to_end(active, paths[:batch], size, head, e2e_count, sync) if e2e_count else {}
        for name in active:
            entry = entries[name]
            entry["latency_ms"] = summarize(samples[name])
            entry["samples_ms"] = [round(v, 4) for v in samples[name]]
            if name in stages:  # a split artifact: graph 1, host step, graph 2 of the same calls
                entry["stages_ms"] = {stage: summarize(values) for stage, values in stages[name].items()}
            if name in e2e:
                entry["e2e_ms"] = summarize(e2e[name].e2e_ms)
                entry["e2e_stages_ms"] = {s: float(np.mean(e2e[name].stages_ms[s])) for s in STAGES}
        results += list(entries.values())
    for runner in runners.values():
        runner.deactivate()
    peaks.sample_until(PEAK_SAMPLES)  # where no batch had a row to time, the peaks are still measured
    peaks.deactivate()
    return {"results": results, "rounds": rounds_done, "e2e_rounds": e2e_done, "inputs": source,
            "peaks": peaks}


def _round_done(done: int, peaks: PeakProbe, log: Log) -> None:
    """After each interleaved round: the peak GEMMs in the first rounds of a batch, progress every tenth."""
    if done <= PEAK_ROUNDS_PER_BATCH:
        peaks.sample()
    if done % 10 == 0:
        log(f"  round {done}")
