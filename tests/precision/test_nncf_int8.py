"""NNCF INT8 on an OpenVINO IR: the rtdetr recipe's ignored scope really keeps its layers float in the written IR
(read back and walked here, independently of precision/nncf_int8.py), NNCF's default quantizes them, and both
recipes are recorded. Slow tier: one NNCF run on the micro model takes ~15 s on the 2-core machine; the fast tests
read the ignored scope and the float-layer census off the FP32 micro IR."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="NNCF INT8 tests need openvino (pip install openvino)")
pytest.importorskip("nncf", reason="NNCF INT8 tests need nncf (pip install nncf)")

from rtdetr_export.artifact import open_artifact
from rtdetr_export.pipeline import OpenVinoExportOptions, export_openvino
from tiers import costly

# The heads and selection our INT8 recipes keep float, as node-name patterns written out here (not imported)
KEPT = ("*/enc_score_head/*", "*/enc_bbox_head/*", "*/dec_score_head*", "*/dec_bbox_head*", "*/enc_output/*",
        "*/attention_weights/*", "*/sampling_offsets/*")
LAYERS = ("Convolution", "MatMul")


def quantized_inputs(op) -> list[str]:
    """Which inputs of a layer come from a FakeQuantize or an int8-stored weight, walking back through the
    decompression and layout operations OpenVINO puts between them."""
    found = []
    for index in range(op.get_input_size()):
        node = op.input_value(index).get_node()
        while node.get_type_name() in ("Convert", "Reshape", "Transpose", "Multiply", "Subtract", "Unsqueeze"):
            node = node.input_value(0).get_node()
        if node.get_type_name() == "FakeQuantize" or (
                node.get_type_name() == "Constant" and node.get_element_type().get_type_name() in ("i8", "u8")):
            found.append(f"input {index}: {node.get_type_name()}")
    return found


@pytest.fixture(scope="module")
@costly
def nncf_irs(micro_fp32, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("nncf")
    out = {}
    for recipe in ("rtdetr", "default"):
        # random weights' detections do not survive INT8 (micro_int8 is not verified either): the recipe is judged
        # on the trained fixture (benchmarks/run_openvino_ir.sh)
        out[recipe] = export_openvino(micro_fp32, folder / f"{recipe}.xml", OpenVinoExportOptions(
            precision="int8", recipe=recipe, calib_count=4, verify=False)).path
    return out


def layers(path: Path) -> list:
    import openvino as ov

    return [op for op in ov.Core().read_model(str(path)).get_ordered_ops() if op.get_type_name() in LAYERS]


def test_the_rtdetr_recipe_keeps_the_heads_and_selection_float_in_the_written_ir(nncf_irs):
    kept = [op for op in layers(nncf_irs["rtdetr"])
            if any(fnmatch.fnmatchcase(op.get_friendly_name(), p) for p in KEPT)]
    assert len(kept) >= 10  # both decoder layers' heads, the encoder's heads, the sampling projections
    assert {op.get_friendly_name(): quantized_inputs(op) for op in kept if quantized_inputs(op)} == {}
    others = [op for op in layers(nncf_irs["rtdetr"]) if op not in kept and quantized_inputs(op)]
    assert len(others) >= 40  # the backbone's and encoder's convolutions and the decoder's projections are INT8


def test_nncf_default_recipe_quantizes_the_heads_ours_keeps_float(nncf_irs):
    heads = [op for op in layers(nncf_irs["default"])
             if fnmatch.fnmatchcase(op.get_friendly_name(), "*/dec_score_head*")]
    assert heads and all(quantized_inputs(op) for op in heads)


def test_the_record_says_which_recipe_and_what_it_kept_float(nncf_irs):
    ours, default = open_artifact(nncf_irs["rtdetr"]), open_artifact(nncf_irs["default"])
    assert ours.precision == default.precision == "int8"
    assert (ours.nncf.recipe, default.nncf.recipe) == ("rtdetr", "default")
    assert default.nncf.kept_float == {}
    assert any(part.startswith("query selection") for part in ours.nncf.kept_float)
    assert any(part.endswith("score head") for part in ours.nncf.kept_float)
    assert ours.recipe.calibration["count"] == 4 and ours.verification is None


# Fast: the ignored scope and the float-layer census on the session's FP32 micro IR, without running NNCF.

def test_the_rtdetr_recipes_ignored_scope_names_every_kept_head_and_the_attention_matmuls(micro_ir):
    import openvino as ov

    from rtdetr_export.precision.nncf_int8 import ignored_layers

    model = ov.Core().read_model(str(micro_ir))
    scope = ignored_layers(model)
    kept = [op.get_friendly_name() for op in layers(micro_ir)
            if any(fnmatch.fnmatchcase(op.get_friendly_name(), p) for p in KEPT)]
    assert kept and set(kept) <= set(scope)
    # Activation x activation products (attention scores and their weighted sums) are kept float too; a MatMul
    # with a weight operand (a projection) is quantized.
    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    attention = [op.get_friendly_name() for op in matmuls
                 if not any(quantized_or_weight(op.input_value(i)) for i in range(2))]
    assert attention and set(attention) <= set(scope)
    assert any(op.get_friendly_name() not in scope for op in matmuls)


def quantized_or_weight(output) -> bool:
    """Whether a MatMul operand is a stored weight (a Constant, through OpenVINO's decompression ops)."""
    node = output.get_node()
    while node.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def test_every_layer_of_an_fp32_ir_is_float_and_an_unknown_recipe_is_one_line(micro_ir):
    import openvino as ov

    from rtdetr_export.errors import RTDetrExportError
    from rtdetr_export.precision.nncf_int8 import float_layers, quantize_nncf

    model = ov.Core().read_model(str(micro_ir))
    assert sorted(float_layers(model)) == sorted(op.get_friendly_name() for op in layers(micro_ir))
    with pytest.raises(RTDetrExportError, match="unknown NNCF recipe 'fast'"):
        quantize_nncf(model, [], recipe="fast")


# The rtdetr recipe's activation ranges: the extremes over all calibration images, as the Q/DQ recipes' minmax.

def one_conv_model():
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    images = ops.parameter([1, 3, 8, 8], np.float32, name="images")
    weight = ops.constant(np.random.default_rng(0).standard_normal((16, 3, 3, 3)).astype(np.float32))
    conv = ops.convolution(images, weight, [1, 1], [1, 1], [1, 1], [1, 1])
    conv.set_friendly_name("/model/backbone/conv")
    return ov.Model([ops.relu(conv)], [images], "one_conv")


def input_range(model) -> tuple[float, float]:
    """The (low, high) of the FakeQuantize NNCF put on the model's input."""
    (fake,) = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
               and op.input_value(0).get_node().get_type_name() == "Parameter"]
    return tuple(float(fake.input_value(i).get_node().get_data().reshape(-1)[0]) for i in (1, 2))


def test_the_rtdetr_recipe_ranges_activations_over_all_calibration_images_not_their_mean():
    """NNCF's default averages each image's min and max (MEAN_MINMAX), clipping what only some images reach; the
    rtdetr recipe keeps the extremes (docs/precision.md: -0.0071 -> -0.0036 AP on the trained fixture)."""
    import numpy as np

    from rtdetr_export.precision.nncf_int8 import quantize_nncf

    rng = np.random.default_rng(1)
    # Image k spans [-(k + 1), k + 1]: the extremes are +-4, the mean of the images' extremes +-2.5.
    feeds = [{"images": np.clip(rng.uniform(-1, 1, (1, 3, 8, 8)) * 2, -1, 1).astype(np.float32) * (k + 1)}
             for k in range(4)]
    ranges = {recipe: input_range(quantize_nncf(one_conv_model(), feeds, recipe)[0])
              for recipe in ("rtdetr", "default")}
    assert ranges["rtdetr"] == pytest.approx((-4.0, 4.0), rel=0.02)
    assert ranges["default"] == pytest.approx((-2.5, 2.5), rel=0.02)
