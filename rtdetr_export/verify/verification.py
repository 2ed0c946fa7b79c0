"""Verify an exported artifact against the PyTorch reference on several inputs and batch sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rtdetr_export.artifact import GraphOptions, load_onnx, make_feed
from rtdetr_export.artifact.verification import BatchComparison, Verification, VerificationInputs
from rtdetr_export.backends import OnnxRuntimeRunner, Runner
from rtdetr_export.backends.fp16_emulation import Fp16EmulationRunner
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.backends.split_runner import GraphRunner, SplitRunner
from rtdetr_export.imaging import list_images
from rtdetr_export.imaging.inputs import calibration_split, verification_images
from rtdetr_export.model import RTDETRv2, SizeRange
from rtdetr_export.model.config import size_text
from rtdetr_export.onnx_graph import stores_fp16
from rtdetr_export.verify.agreement import AgreementThresholds, compare_agreement
from rtdetr_export.verify.compare import (Thresholds, compare_detections, compare_raw, confirm_flips,
                                          judged_precision, thresholds_for)
from rtdetr_export.verify.reference import MARGIN, ReferenceRunner
from rtdetr_export.verify.selection import TiedSelection, candidate_selection


# Cells. Re-rounding a suspect takes its nearest point and any within this distance of it: far below the 1e-4
# that makes a suspect, but above the drift an earlier flip's self-attention echo gives the same point.
NEAREST_POINT_SLACK = 1e-6


def box_scale(feed: dict[str, np.ndarray]) -> np.ndarray:
    """Per image: model input size / original size, to measure box errors in input pixels."""
    return max(feed["images"].shape[2:]) / feed["orig_target_sizes"].max(1)


def _compare(head: str, feed: dict[str, np.ndarray], ref: dict[str, np.ndarray], test: dict[str, np.ndarray],
             thresholds: Thresholds) -> BatchComparison:
    if head == "raw":
        return compare_raw(ref, test, thresholds)
    return compare_detections(ref, test, thresholds, box_scale(feed))


def compare_outputs(head: str, feed: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                    test: dict[str, np.ndarray], thresholds: Thresholds,
                    reference: ReferenceRunner | None = None) -> BatchComparison:
    """FP32 comparison of one feed's outputs, confirming suspected rounding flips with ``reference``
    (without one they stay failures).

    Only each suspect's nearest point is re-rounded: a query may have a second point within FLIP_MARGIN
    that did not flip. A flip also nudges the other queries through the decoder's self-attention, and those
    may carry near-boundary points of their own that did not flip. So the suspects are tried greedily: each
    round re-runs the reference with, per image, the worst-failing suspect added, until the candidate
    matches or no suspect is left.
    """
    plain = run = _compare(head, feed, ref, test, thresholds)
    if not run.failures or run.suspected_flips is None or reference is None:
        return plain
    limits = np.full(run.suspected_flips.shape, -1.0)  # per query: re-round points this close (cells)
    current = ref
    for _ in range(max(1, int(thresholds.flip_rows_fraction * limits.shape[1]))):
        suspects = np.where(limits >= 0, 0.0, run.suspected_flips) if run.suspected_flips is not None else None
        if suspects is None or not suspects.any():
            break
        rows = np.nonzero(suspects.max(1) > 0)[0]
        queries = suspects[rows].argmax(1)
        # The nearest point's margin in the run that found it, plus slack for the echo of earlier flips.
        limits[rows, queries] = current[MARGIN][rows, queries] + NEAREST_POINT_SLACK
        current = reference.infer(feed, flip=limits)
        run = _compare(head, feed, current, test, thresholds)
        if not run.failures:
            break
    return confirm_flips(plain, run, limits >= 0, thresholds, head) if (limits >= 0).any() else plain


def compare_with_candidate_selection(head: str, feed: dict[str, np.ndarray], test: dict[str, np.ndarray],
                                     thresholds: Thresholds, reference: ReferenceRunner,
                                     candidate: OnnxRuntimeRunner | OpenVinoRunner | SplitRunner,
                                     plain: BatchComparison) -> BatchComparison:
    """``plain`` again, unless the candidate kept other encoder cells than the reference only among tied scores
    and the reference re-run with its cells matches (verify/selection.py)."""
    chosen = candidate_selection(candidate, feed)
    if chosen is None:
        return plain
    tied = TiedSelection(chosen)
    with reference.model.observe_selection(tied):
        ref = reference.infer(feed)
        if tied.refused or not tied.reselected:
            return plain
        run = compare_outputs(head, feed, ref, test, thresholds, reference)  # any flip re-runs keep the cells
    if run.failures:
        return plain
    run.reselected_queries = tied.reselected
    return run


def compare_runners(reference: ReferenceRunner, candidate: Runner, head: str, feeds: list[dict[str, np.ndarray]],
                    thresholds: Thresholds | AgreementThresholds, candidate_name: str | None = None,
                    precision: str = "fp32", inputs: VerificationInputs | None = None) -> Verification:
    """Run every feed through both runners and compare: FP32 by tensor limits, FP16/INT8 by agreement."""
    runs = []
    with reference, candidate:
        for feed in feeds:
            ref, test = reference.infer(feed), candidate.infer(feed)
            if isinstance(thresholds, AgreementThresholds):  # fp16 / int8: detection agreement
                runs.append(compare_agreement(ref, test, head, thresholds))
            else:
                run = compare_outputs(head, feed, ref, test, thresholds, reference)
                if run.failures and (type(candidate) in (OnnxRuntimeRunner, OpenVinoRunner)
                                     or isinstance(candidate, SplitRunner)):
                    run = compare_with_candidate_selection(head, feed, test, thresholds, reference, candidate, run)
                runs.append(run)
    return Verification(head, runs, asdict(thresholds), candidate=candidate_name or candidate.name,
                        precision=precision, inputs=inputs or VerificationInputs())


@dataclass(frozen=True)
class VerificationPlan:
    """What an artifact is verified on, by the one rule every artifact follows: each batch at ``size``; a
    dynamic-size artifact also at its range's min and max (at the first batch), the two ends a runtime's shape
    handling can get wrong. ``inputs``: synthetic scenes or a folder of the user's images (verify/inputs.py
    ``choose_inputs`` decides which); successive runs take successive images of the folder."""

    head: str
    top_k: int
    batches: tuple[int, ...]
    size: tuple[int, int]
    size_range: SizeRange | None = None
    inputs: VerificationInputs = field(default_factory=VerificationInputs)

    @classmethod
    def for_graph(cls, options: GraphOptions, size: tuple[int, int], inputs: VerificationInputs | None = None,
                  batches: list[int] | None = None) -> "VerificationPlan":
        """The plan for a graph exported with ``options`` (``batches``: in place of its own rule, e.g. an
        engine profile's ends)."""
        return cls(options.head, options.top_k, tuple(batches or options.verification_batches), tuple(size),
                   options.size_range, inputs or VerificationInputs())

    @property
    def runs(self) -> list[tuple[int, tuple[int, int]]]:
        """(batch, input size) of each run."""
        plan = [(batch, self.size) for batch in self.batches]
        if self.size_range is not None:
            plan += [(self.batches[0], end) for end in dict.fromkeys((self.size_range.min, self.size_range.max))
                     if end != self.size]
        return plan

    def _paths(self) -> list[Path] | None:
        """The image files the runs draw from, in order (None: synthetic scenes)."""
        if self.inputs.synthetic:
            return None
        if self.inputs.held_out:
            return calibration_split(self.inputs.folder, self.inputs.calibration)[1]
        return list_images(self.inputs.folder)

    def feeds(self) -> list[dict[str, np.ndarray]]:
        paths, feeds, start = self._paths(), [], 0
        for i, (batch, size) in enumerate(self.runs):
            feeds.append(make_feed(self.head, *verification_images(batch, size, paths, seed=i, start=start)))
            start += batch  # the next run judges the next images, so a folder's images are each judged once
        return feeds

    def recorded_inputs(self) -> VerificationInputs:
        """``inputs`` as the record states them: with the number of distinct images the runs judged."""
        if self.inputs.synthetic:
            return self.inputs
        available = len(self._paths())
        return replace(self.inputs, used=min(available, sum(batch for batch, _ in self.runs)))

    def summary(self) -> str:
        """How progress lines name the plan: "batch 1, 4" or "batch 1 at 640x640, batch 1 at 320x320", then the
        inputs when they are the user's images."""
        if self.size_range is None:
            text = "batch " + ", ".join(map(str, self.batches))
        else:
            text = ", ".join(f"batch {b} at {size_text(s)}" for b, s in self.runs)
        return text if self.inputs.synthetic else f"{text}, on {self.recorded_inputs()}"


def verify_candidate(model: RTDETRv2, candidate: Runner, plan: VerificationPlan, precision: str = "fp32",
                     thresholds: Thresholds | AgreementThresholds | None = None,
                     name: str | None = None) -> Verification:
    """The one verification loop, for ONNX files and engines alike: run ``plan``'s feeds through the PyTorch
    reference and ``candidate`` and judge them (FP32 by tensor limits with rounding-flip proofs, FP16/INT8 by
    detection agreement). A dynamic-size artifact's runs each record their input size."""
    thresholds = thresholds or thresholds_for(precision)
    verification = compare_runners(ReferenceRunner(model, plan.head, plan.top_k), candidate, plan.head, plan.feeds(),
                                   thresholds, name, precision, plan.recorded_inputs())
    if plan.size_range is not None:
        for run, (_, size) in zip(verification.runs, plan.runs):
            run.input_size = list(size)
    return verification


def candidate_graphs(precision: str, graphs: list[Path], openvino: str | None = None) -> tuple[GraphRunner, str]:
    """How verification runs each ONNX graph of an artifact of ``precision`` made of ``graphs`` (one file, or a
    split's two), and the name its candidate reports: OpenVINO CPU under the hint ``openvino``; an FP16 graph (and
    an INT8 graph whose float layers are FP16) as FP32 compute with FP16 storage (backends/fp16_emulation.py): ONNX
    Runtime's CPU provider lacks most FP16 kernels and would otherwise skip most of the rounding; else ONNX
    Runtime."""
    if openvino is not None:
        return (lambda path: OpenVinoRunner(path, openvino)), f"openvino-cpu-{openvino}"
    if precision == "fp16" or (precision != "fp32" and any(stores_fp16(load_onnx(path)) for path in graphs)):
        return Fp16EmulationRunner, "onnxruntime-cpu-fp16-emulated"
    return OnnxRuntimeRunner, "onnxruntime-cpu"


def verify_onnx(model: RTDETRv2, onnx_path: str | Path, plan: VerificationPlan, precision: str = "fp32",
                thresholds: Thresholds | AgreementThresholds | None = None,
                openvino: str | None = None) -> Verification:
    """ONNX Runtime (CPU), or OpenVINO CPU under the precision hint ``openvino``, vs the PyTorch reference
    (``candidate_graphs`` says how each precision runs). An FP32 file under the bf16 hint is judged by the bf16
    (agreement) limits."""
    thresholds = thresholds or thresholds_for(judged_precision(precision, openvino))
    graph, name = candidate_graphs(precision, [Path(onnx_path)], openvino)
    return verify_candidate(model, graph(Path(onnx_path)), plan, precision, thresholds, name)


def verify_split_graphs(model: RTDETRv2, encoder: Path, decoder: Path, plan: VerificationPlan,
                        precision: str = "fp32", openvino: str | None = None) -> Verification:
    """A split artifact's graph 1 -> host step -> graph 2 vs the PyTorch reference, each graph run and judged as
    ``verify_onnx`` runs and judges one file (ONNX Runtime CPU, or OpenVINO CPU under the hint ``openvino``)."""
    graph, name = candidate_graphs(precision, [encoder, decoder], openvino)
    runner = SplitRunner(encoder, decoder, model.config.num_queries, plan.head, plan.top_k, graph)
    return verify_candidate(model, runner, plan, precision, thresholds_for(judged_precision(precision, openvino)),
                            name=f"{name}-split")
