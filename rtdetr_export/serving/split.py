"""A split artifact (``rtdetr-export onnx --split``) served as one model.

``NAME`` is an ensemble with the inputs and outputs of the single-file artifact of the same head (the record's
``io``), so a client cannot tell the two apart. Its steps:

1. ``NAME_encoder``: graph 1 (images -> memory and the per-cell targets, logits and reference boxes), served by
   the backend a single file would get (onnxruntime, openvino, or our Python-backend model);
2. ``NAME_select``: the host step's query selection, a Python-backend model that imports
   ``rtdetr_export.imaging.host_step`` (the code the local split runner runs, not a copy of it);
3. ``NAME_decoder``: graph 2, fed graph 1's ``memory`` directly (the host step need not pass it through);
4. detections head only, ``NAME_detections``: the host's top-k over queries x classes (``top_detections``).

Every step model is batched, scheduled and instanced as a single file's model is (``config._scheduling``); the
graphs' tensors come from the graphs' own ``io`` in the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtdetr_export.artifact import SplitRecord, TensorSpec
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256
from rtdetr_export.serving.config import (SERVED, BatchPlan, TritonOptions, add_parameters, add_tensors, model_config,
                                          pb2, python_step, record_parameters, tensor_types)

MEMORY = "memory"  # graph 1's output that graph 2 reads unchanged


@dataclass
class SplitModel:
    """One model folder of a served split: its config and the files beside it (``1/`` holds them)."""

    name: str
    role: str  # encoder, select, decoder, detections, model (the ensemble)
    backend: str
    config: Any
    files: dict[str, Path | str]


def check_split_backend(sidecar: Path, backend: str) -> str:
    """The backend serving the graphs: a single ONNX file's choices (auto: onnxruntime)."""
    if backend == "tensorrt":
        raise RTDetrExportError(f"{sidecar.name} is a split artifact: its graphs are ONNX files, served with "
                                "--backend onnxruntime, openvino or python")
    return "onnxruntime" if backend == "auto" else backend


def split_step_names(name: str, record: SplitRecord) -> list[str]:
    """The model folders a split writes besides ``name`` itself."""
    steps = ["encoder", "select", "decoder"] + (["detections"] if record.head == "detections" else [])
    return [f"{name}_{step}" for step in steps]


def _names(specs: list[TensorSpec] | tuple[TensorSpec, ...]) -> dict[str, str]:
    """An ensemble step's map: every tensor under its own name (the graphs and the host step share the names of
    model/split.py's CELL_OUTPUTS and QUERY_INPUTS)."""
    return {spec.name: spec.name for spec in specs}


def _host_step(name: str, role: str, inputs: list[TensorSpec], outputs: list[TensorSpec], plan: BatchPlan,
               options: TritonOptions, parameters: dict[str, Any]) -> Any:
    config = python_step(name, role, plan, options)
    add_tensors(config.input, tuple(inputs), {s.name: s.dtype for s in inputs}, plan)
    add_tensors(config.output, tuple(outputs), {s.name: s.dtype for s in outputs}, plan)
    add_parameters(config, parameters)
    return config


def split_models(name: str, sidecar: Path, record: SplitRecord, backend: str, plan: BatchPlan,
                 options: TritonOptions, template: str) -> list[SplitModel]:
    """Every model folder serving the split artifact of ``sidecar`` as ``name`` (see the module docstring)."""
    folder = sidecar.parent
    encoder, decoder = record.encoder.io, record.decoder.io
    models = []
    for part, graph in record.graphs.items():
        # open_split_record has checked each file against the sha256 recorded; the config states that one.
        config = model_config(f"{name}_{part}", folder / graph.file, record, backend, plan, options, graph.sha256,
                              io=graph.io, role=part)
        add_parameters(config, {"split_part": part})
        files: dict[str, Path | str] = {SERVED[backend][0]: folder / graph.file}
        if backend == "python":
            files["model.py"] = template
        models.append(SplitModel(config.name, part, backend, config, files))

    cells = [spec for spec in encoder.outputs if spec.name != MEMORY]
    queries = [spec for spec in decoder.inputs if spec.name != MEMORY]
    select = _host_step(f"{name}_select", "select", cells, queries, plan, options,
                        {"num_queries": record.model.config.num_queries, "host_step": record.host_step})
    models.insert(1, SplitModel(select.name, "select", "python", select, {"model.py": template}))

    ensemble = pb2().ModelConfig(name=name, platform="ensemble", max_batch_size=plan.max_batch_size)
    add_tensors(ensemble.input, record.io.inputs, tensor_types(record.io), plan)
    add_tensors(ensemble.output, record.io.outputs, tensor_types(record.io), plan)
    steps = ensemble.ensemble_scheduling.step
    steps.add(model_name=f"{name}_encoder", model_version=-1, input_map=_names(encoder.inputs),
              output_map=_names(encoder.outputs))
    steps.add(model_name=select.name, model_version=-1, input_map=_names(cells), output_map=_names(queries))
    steps.add(model_name=f"{name}_decoder", model_version=-1, input_map=_names(decoder.inputs),
              output_map=_names(decoder.outputs))
    if record.head == "detections":
        sizes = [record.io["orig_target_sizes"]]
        detections = _host_step(f"{name}_detections", "detections", [*decoder.outputs, *sizes],
                                list(record.io.outputs), plan, options,
                                {"top_k": record.top_k, "host_step": record.host_step})
        models.append(SplitModel(detections.name, "detections", "python", detections, {"model.py": template}))
        steps.add(model_name=detections.name, model_version=-1, input_map=_names([*decoder.outputs, *sizes]),
                  output_map=_names(record.io.outputs))
    # Role "model": to a client (serving/client.py) this is the artifact's model, contract and record included.
    # ``inner_model``: graph 1, where Triton forms the batches the load test reports (serving/load.py).
    add_parameters(ensemble, {"role": "model", "artifact": {"file": sidecar.name, "sha256": file_sha256(sidecar)},
                              "split_steps": [step.model_name for step in steps], "inner_model": f"{name}_encoder"})
    add_parameters(ensemble, record_parameters(record))
    models.append(SplitModel(name, "model", "ensemble", ensemble, {}))
    return models
