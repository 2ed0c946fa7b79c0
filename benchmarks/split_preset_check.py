#!/usr/bin/env python3
"""A preset's split artifact on ncnn and LiteRT, checked by hand-sized means (docs/portability.md, D-FINE-N).

benchmarks/portability.py measures presets as single files and the trained fixtures as both artifacts; this checks a
preset's split (seeded weights, `rtdetr-export onnx --preset P --split --bilinear-op gridsample`, batch 1) on the two
edge runtimes whose single-file rows failed for D-FINE-N:

- ncnn: graph 1 -> the project's host step -> graph 2 on ncnn (benchmarks/portability_fixture.py's converter),
  against PyTorch with the verification's metric; a choice among tied selection scores is proven as verification
  proves it (the host step says which cells it kept: verify/selection.py ``TiedSelection``);
- LiteRT: graph 2 converted as the fixture rows convert it, fed the very inputs ONNX Runtime's graph 2 gets (graph 1
  and the host step on ONNX Runtime), against ONNX Runtime's graph 2.

    build/portability/venv/bin/python benchmarks/split_preset_check.py --preset dfine_n \\
        --litert-python build/portability/venv-tf/bin/python

Run with the portability environment (benchmarks/run_portability.sh makes it: the project's packages plus pnnx and
ncnn); the LiteRT part runs in its own interpreter (``--litert-python``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAPH2_INPUTS = ("memory", "query_targets", "reference_logits")


def litert_worker(decoder: Path, feeds_path: Path, work: Path) -> None:
    """In the LiteRT interpreter: graph 2 as a float32 .tflite, run on each scene's inputs; outputs saved."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from portability_fixture import _LiteRtGraph

    feeds = np.load(feeds_path)
    graph = _LiteRtGraph(decoder, work, 2, "fp32", None)
    scenes = sorted({key.split("/")[0] for key in feeds.files})
    out = {}
    for scene in scenes:
        result = graph.run({name: feeds[f"{scene}/{name}"] for name in GRAPH2_INPUTS})
        out.update({f"{scene}/{name}": value for name, value in result.items()})
    np.savez(work / "litert_outputs.npz", **out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="dfine_n")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--scenes", type=int, default=2, help="synthetic scenes (seeds 0..N-1)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "portability" / "split_preset")
    parser.add_argument("--litert-python", help="interpreter with onnx2tf and LiteRT (skipped without it)")
    parser.add_argument("--litert-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.litert_worker:
        litert_worker(*map(Path, args.litert_worker))
        return 0

    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from portability_fixture import _NcnnGraph
    from rtdetr_export.imaging.host_step import gather_queries, select_cells
    from rtdetr_export.imaging.inputs import synthetic_images
    from rtdetr_export.model.sampler import Sampler
    from rtdetr_export.model.split import CELL_OUTPUTS
    from rtdetr_export.pipeline import OnnxExportOptions, export_split
    from rtdetr_export.verify import compare_outputs, thresholds_for
    from rtdetr_export.verify.reference import ReferenceRunner
    from rtdetr_export.verify.selection import TiedSelection
    from rtdetr_export.weights import load_model

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = load_model(preset=args.preset, image_size=args.image_size)
    split = export_split(model, work / f"{args.preset}_split.onnx",
                         OnnxExportOptions(batch=1, sampler=Sampler.GRIDSAMPLE_BILINEAR), force=True)
    report: dict = {"preset": args.preset, "input": args.image_size, "export_verification": [
        {name: check.value for name, check in run.outputs.items()} for run in split.record.verification.runs]}
    images = [synthetic_images(1, (args.image_size,) * 2, seed=i) for i in range(args.scenes)]
    num_queries = model.config.num_queries

    # ONNX Runtime: graph 2's inputs and outputs, the LiteRT check's feeds and reference.
    encoder, decoder = ort.InferenceSession(str(split.encoder)), ort.InferenceSession(str(split.decoder))
    feeds, ort_out = {}, {}
    for i, image in enumerate(images):
        cells = dict(zip(CELL_OUTPUTS, encoder.run(None, {"images": image})))
        queries = gather_queries(cells, select_cells(cells, num_queries))
        feeds.update({f"{i}/{k}": queries[k] for k in GRAPH2_INPUTS})
        ort_out.update({f"{i}/{k}": v for k, v in zip(("logits", "pred_boxes"), decoder.run(None, queries))})
    np.savez(work / "graph2_feeds.npz", **feeds)

    # ncnn, end to end against PyTorch.
    ncnn_work = work / "ncnn"
    ncnn_work.mkdir(exist_ok=True)
    graphs = [_NcnnGraph(path, ncnn_work, 2, "fp32", None) for path in (split.encoder, split.decoder)]
    reference = ReferenceRunner(model, "raw")
    reference.activate()
    thresholds, rows = thresholds_for("fp32"), []
    for i, image in enumerate(images):
        feed = {"images": image}
        cells = graphs[0].run(feed)
        chosen = select_cells(cells, num_queries)
        test = graphs[1].run(gather_queries(cells, chosen))
        plain = compare_outputs("raw", feed, reference.infer(feed), test, thresholds, reference)
        tied = TiedSelection(chosen)
        with model.observe_selection(tied):
            proven = compare_outputs("raw", feed, reference.infer(feed), test, thresholds, reference)
        rows.append({"scene": i, "plain_failures": plain.failures,
                     "plain_max_abs": {n: c.stats["max_abs"] for n, c in plain.outputs.items()},
                     "reselected": tied.reselected, "refused": tied.refused, "failures": proven.failures,
                     "max_abs": {n: c.stats["max_abs"] for n, c in proven.outputs.items()}})
    report["ncnn"] = {"problems": [g.problem for g in graphs if g.problem], "scenes": rows}

    if args.litert_python:
        litert_work = work / "litert"
        litert_work.mkdir(exist_ok=True)
        subprocess.run([args.litert_python, __file__, "--litert-worker", str(split.decoder),
                        str(work / "graph2_feeds.npz"), str(litert_work)], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = np.load(litert_work / "litert_outputs.npz")
        report["litert_graph2_vs_onnxruntime"] = {
            key: float(np.abs(got[key] - ort_out[key]).max()) for key in sorted(ort_out)}
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
