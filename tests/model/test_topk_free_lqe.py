"""D-FINE's LQE without TopK (model/fdr.py ``top_values``): the split's graph 2 takes each edge distribution's top
probabilities with Max/Min, and they are exactly torch.topk's values, ties included; the single file keeps TopK.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch

from rtdetr_export.model.fdr import LQE, top_values


def _inputs(seed: int, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Non-negative inputs of the kinds an LQE sees and the kinds that tie: probabilities of random bin logits,
    of bin logits on a coarse grid (equal logits, equal probabilities), of all-equal logits (a uniform
    distribution: every bin ties), of a one-hot-like peak (underflowed zeros tie), and raw values on a 4-level grid
    (ties everywhere, the top value repeated more than k times)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g)
    peaked = torch.zeros(shape)
    peaked[..., shape[-1] // 2] = 200.0  # exp(-200) underflows: one probability of 1, the rest exactly 0
    return {"random": logits.softmax(-1), "grid": (torch.round(logits * 2) / 2).softmax(-1),
            "uniform": torch.zeros(shape).softmax(-1), "peak": peaked.softmax(-1),
            "levels": torch.randint(0, 4, shape, generator=g).float() / 4}


@pytest.mark.parametrize("bins, k", [(33, 4), (33, 1), (33, 33), (17, 4), (5, 3), (8, 8), (1, 1), (64, 6)])
def test_top_values_are_exactly_torch_topk_values_ties_included(bins, k):
    ties = 0
    for seed in range(5):
        for kind, x in _inputs(seed, (2, 7, 4, bins)).items():
            expected = x.topk(k, dim=-1).values
            assert torch.equal(top_values(x, k), expected), (kind, seed)
            ties += int((expected[..., 1:] == expected[..., :-1]).sum())
    if k > 1:
        assert ties > 0  # equal values really were among the top k: the ties case is not vacuous


def test_top_values_refuses_a_k_outside_the_axis():
    with pytest.raises(ValueError, match="outside"):
        top_values(torch.ones(2, 5), 6)


def test_the_lqe_gives_the_same_logits_either_way():
    lqe = LQE(4, 32, 16, 2).eval()
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(2, 30, 4, generator=g)
        corners = torch.round(torch.randn(2, 30, 4 * 33, generator=g) * 2) / 2  # tied bin logits
        with torch.no_grad():
            lqe.topk_free = False
            with_topk = lqe(scores, corners)
            lqe.topk_free = True
            without = lqe(scores, corners)
        assert torch.equal(with_topk, without)


def test_the_onnx_graph_of_top_values_holds_only_max_and_min_and_matches_topk_on_onnx_runtime(tmp_path):
    import onnxruntime as ort

    class Top(torch.nn.Module):
        def forward(self, x):
            return top_values(x, 4)

    path = tmp_path / "top.onnx"
    torch.onnx.export(Top(), (torch.rand(1, 3, 4, 33),), str(path), input_names=["x"], output_names=["top"],
                      opset_version=17, dynamo=False, dynamic_axes={"x": {0: "batch", 1: "queries"}})
    ops = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert not {"TopK", "Sort", "ArgMax", "Greater", "Less", "Equal", "Where"} & set(ops)
    assert ops["Max"] + ops["Min"] == 58  # the docstring's count for k = 4 over 33 bins
    session = ort.InferenceSession(str(path))
    for seed in range(3):
        for kind, x in _inputs(seed, (2, 30, 4, 33)).items():
            (top,) = session.run(None, {"x": x.numpy()})
            np.testing.assert_array_equal(top, x.topk(4, dim=-1).values.numpy(), err_msg=kind)


def test_the_single_file_keeps_the_lqe_topk(micro_dfine_fp32):
    """Only the split export writes the LQE without TopK: the default single file's graph, and so its numbers,
    are the ones it always had (query selection's TopK and the LQE's)."""
    ops = collections.Counter(node.op_type for node in onnx.load(str(micro_dfine_fp32)).graph.node)
    assert ops["TopK"] == 2 and ops["Max"] == 0


def test_a_model_is_built_with_topk_and_only_set_topk_free_heads_changes_it():
    from micro import micro_dfine_model

    model = micro_dfine_model()
    lqes = [m for m in model.modules() if isinstance(m, LQE)]
    assert lqes and not any(m.topk_free for m in lqes)
    model.set_topk_free_heads(True)
    assert all(m.topk_free for m in lqes)
