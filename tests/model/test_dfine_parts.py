"""D-FINE's exported nodes are named after D-FINE's parts (precision reports, --keep-fp32 / --int8-exclude)."""

from __future__ import annotations

import pytest

from rtdetr_export.model.parts import OTHER, part_of


@pytest.mark.parametrize("node, label, pattern", [
    ("/model/backbone/stem/stem1/conv/Conv", "backbone stem (HGNetv2)", "/model/backbone/stem/*"),
    ("/model/backbone/stages.3/blocks.0/layers.1/conv2/conv/Conv", "backbone stage 3 (HGNetv2)",
     "/model/backbone/stages.3/*"),
    ("/model/decoder/layers.1/gateway/gate/MatMul", "decoder layer 1 gate (D-FINE's cross-attention residual)",
     "/model/decoder/layers.1/gateway/*"),
    ("/model/decoder/lqe_layers.2/Softmax", "decoder layer 2 LQE (localization quality)",
     "/model/decoder/lqe_layers.2/*"),
    ("/model/decoder/pre_bbox_head/layers.2/MatMul", "decoder initial box head (D-FINE)",
     "/model/decoder/pre_bbox_head/*"),
    ("/model/decoder/Softmax_2", "FDR edge distributions (softmax, integral)", "/model/decoder/Softmax*"),
    ("/model/decoder/MatMul_1", "FDR edge distributions (softmax, integral)", "/model/decoder/MatMul*"),
])
def test_d_fine_node_names_map_to_d_fine_parts(node, label, pattern):
    assert part_of(node).label == label and part_of(node).pattern == pattern


@pytest.mark.slow  # one D-FINE-N export (~10 s)
def test_every_node_of_a_d_fine_graph_belongs_to_a_named_part():
    from rtdetr_export.export.torch_export import GraphOptions, export_graph
    from rtdetr_export.model import Sampler
    from rtdetr_export.weights import load_model

    model = load_model(preset="dfine_n", image_size=320)
    graph = export_graph(model, GraphOptions(batch=1, sampler=Sampler.parse("default", "gather"))).graph
    parts = {part_of(node.name).label for node in graph.graph.node}
    unnamed = [node.name for node in graph.graph.node if part_of(node.name) == OTHER]
    assert not unnamed, unnamed[:5]
    assert {"FDR edge distributions (softmax, integral)", "decoder layer 2 LQE (localization quality)",
            "backbone stem (HGNetv2)"} <= parts

    # INT8 keeps D-FINE's heads in float by default: the FDR integral, the LQE and the initial box head.
    from rtdetr_export.precision.int8 import Int8Options, excluded_nodes

    excluded = excluded_nodes(graph, Int8Options())
    integrals = [n.name for n in graph.graph.node if n.op_type == "MatMul" and
                 part_of(n.name).label.startswith("FDR")]
    assert len(integrals) == model.config.decoder_layers and all(n in excluded for n in integrals)
    assert any("lqe_layers" in n for n in excluded) and any("pre_bbox_head" in n for n in excluded)
