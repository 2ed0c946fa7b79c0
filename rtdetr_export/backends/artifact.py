"""``artifact_runner``: the one place that picks the runner of an artifact file, so every command that runs an
artifact (predict, eval, bench, verify) takes a single ONNX file, a split artifact, an OpenVINO IR and an engine
alike."""

from __future__ import annotations

from pathlib import Path

from rtdetr_export.artifact import ENGINE_SUFFIXES, ArtifactRecord, OpenVinoRecord, SplitRecord, split_sidecar
from rtdetr_export.backends.base import Runner
from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.backends.split_runner import GraphRunner, SplitRunner


def artifact_runner(path: str | Path, record: ArtifactRecord | None = None,
                    graph: GraphRunner = OnnxRuntimeRunner) -> Runner:
    """The runner of the artifact at ``path`` (``record``: its record, None for a file not made by us): a TensorRT
    engine's; a split artifact's (given its sidecar or either graph), each graph opened by ``graph``; an OpenVINO
    IR on OpenVINO (``graph``'s precision hint when ``graph`` is OpenVINO's, else the hint the IR was verified
    with); else ``graph`` on the ONNX file itself."""
    path = Path(path)
    if isinstance(record, OpenVinoRecord):
        runner = graph(path)  # runners open their file on activate: making one to ask its kind costs nothing
        return runner if isinstance(runner, OpenVinoRunner) else OpenVinoRunner(path, record.inference_hint)
    if isinstance(record, SplitRecord):
        folder = split_sidecar(path).parent
        return SplitRunner(folder / record.encoder.file, folder / record.decoder.file,
                           record.model.config.num_queries, record.head, record.top_k, graph)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        from rtdetr_export.backends.tensorrt import TensorRTRunner

        return TensorRTRunner(path)
    return graph(path)
