"""Per-layer profiles of a row (bench/profile.py): ONNX Runtime's trace and OpenVINO's per-node counters read into
per-node times that the calls' wall time bounds, attributed to the model's parts by node name; and the trace reader
on a hand-made trace (warm-up calls dropped, a node's time averaged over the profiled calls)."""

from __future__ import annotations

import pytest

from rtdetr_export.bench.profile import group_of, profile_markdown, profile_onnxruntime, profile_openvino, trace_layers


def _feed(path):
    from rtdetr_export.artifact import make_feed, open_artifact
    import numpy as np

    record = open_artifact(path)
    size = record.input_size
    images = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    return make_feed(record.head, images, [tuple(size)])


def _node(name, op, ts, dur):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "provider": "CPUExecutionProvider"}}


def test_a_trace_counts_only_the_calls_after_warmup_and_averages_each_node_over_them():
    run = lambda ts, dur: {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}  # noqa: E731
    events = [run(0, 100), _node("/model/backbone/conv1/conv1_1/conv/Conv", "Conv", 10, 80),  # warm-up: dropped
              run(200, 100), _node("/model/backbone/conv1/conv1_1/conv/Conv", "Conv", 210, 30),
              _node("/model/decoder/layers.0/self_attn/MatMul", "MatMul", 250, 10),
              run(400, 100), _node("/model/backbone/conv1/conv1_1/conv/Conv", "Conv", 410, 50),
              {"cat": "Node", "name": "/model/decoder/layers.0/self_attn/MatMul_fence_before", "ts": 460, "dur": 1,
               "args": {"op_name": "MatMul"}}]
    layers = {layer.name: layer for layer in trace_layers(events, warmup=1, runs=2)}
    assert set(layers) == {"/model/backbone/conv1/conv1_1/conv/Conv", "/model/decoder/layers.0/self_attn/MatMul"}
    assert layers["/model/backbone/conv1/conv1_1/conv/Conv"].ms == pytest.approx((30 + 50) / 2 / 1e3)
    assert layers["/model/decoder/layers.0/self_attn/MatMul"].ms == pytest.approx(10 / 2 / 1e3)  # ran in one call
    assert layers["/model/backbone/conv1/conv1_1/conv/Conv"].part == "backbone stem"
    assert group_of(layers["/model/decoder/layers.0/self_attn/MatMul"].part) == "decoder"


def _check(profile):
    assert profile.layers and profile.runs == 3 and len(profile.wall_ms) == 3 and profile.total_ms > 0
    # one call's nodes run one after another on both runtimes' CPU paths (one stream): their time fits in the call's
    assert profile.total_ms <= sum(profile.wall_ms) / 3
    groups = {name for name, _, _ in profile.by("group")}
    assert {"backbone", "encoder", "decoder"} <= groups
    for key in ("group", "part", "op_type", "kernel"):
        assert sum(ms for _, ms, _ in profile.by(key)) == pytest.approx(profile.total_ms)
        assert sum(n for _, _, n in profile.by(key)) == len(profile.layers)
    text = profile_markdown([profile])
    assert text.startswith(f"## row: {profile.runtime}, {profile.file}") and "| backbone |" in text


def test_onnx_runtime_profile_of_the_micro_file(micro_fp32):
    profile = profile_onnxruntime(micro_fp32, _feed(micro_fp32), threads=1, runs=3, warmup=1, row="row")
    _check(profile)
    assert {"Conv", "MatMul"} <= {layer.op_type for layer in profile.layers}


def test_openvino_profile_of_the_micro_ir(micro_ir):
    # the first call of a dynamic-shape IR is many times the others (shapes, kernels): warm-up must not count
    profile = profile_openvino(micro_ir, _feed(micro_ir), "f32", threads=1, runs=3, warmup=2, row="row")
    _check(profile)
    assert profile.runtime == "openvino f32" and "Convolution" in {layer.op_type for layer in profile.layers}
