"""benchmarks/litert_matmul_check.py: the copy it converts exposes each batched MatMul's operands and result, so
comparing a runtime's result with the product of its own operands is a check that needs no reference. LiteRT itself
is not needed here: on ONNX Runtime, which computes every MatMul right, the check must find nothing."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnxruntime as ort

from paths import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("litert_matmul_check", ROOT / "benchmarks" / "litert_matmul_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_probed_copy_exposes_every_attention_matmul_and_onnx_runtime_computes_each_as_its_product(
        micro_dfine_fp32, tmp_path):
    matmuls = _script().probed_copy(micro_dfine_fp32, tmp_path / "probed.onnx")
    names = [m["node"] for m in matmuls]
    # The decoder layers' self-attention scores (the MatMul LiteRT wrote transposed for D-FINE-N) are among them.
    assert [n for n in names if n.endswith("self_attn/MatMul_3") and "/decoder/" in n]
    session = ort.InferenceSession(str(tmp_path / "probed.onnx"))
    image = np.random.default_rng(0).random((2, 3, 128, 128), dtype=np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": image})))
    for m in matmuls:
        product = got[m["a"]] @ got[m["b"]]
        assert got[m["out"]].shape == product.shape and np.abs(got[m["out"]] - product).max() < 1e-4, m["node"]
