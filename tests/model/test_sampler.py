"""One sampler value: what the user's --method / --bilinear-op mean, what a graph with it contains, and the layer
that reads with it."""

from __future__ import annotations

import pytest

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model import RTDETRv2, Sampler, preset


@pytest.mark.parametrize("method, op, sampler", [
    ("discrete", None, Sampler.GATHER_NEAREST), ("discrete", "gridsample", Sampler.GATHER_NEAREST),
    ("default", None, Sampler.GATHER_BILINEAR), ("default", "gather", Sampler.GATHER_BILINEAR),
    ("default", "gridsample", Sampler.GRIDSAMPLE_BILINEAR)])
def test_the_users_method_and_bilinear_op_parse_into_one_sampler(method, op, sampler):
    assert Sampler.parse(method, op) is sampler and sampler.method == method


def test_only_the_gridsample_sampler_has_gridsample_and_needs_opset_16():
    assert [s for s in Sampler if s.has_gridsample] == [Sampler.GRIDSAMPLE_BILINEAR]
    assert {s: s.min_opset for s in Sampler} == {Sampler.GATHER_NEAREST: 13, Sampler.GATHER_BILINEAR: 13,
                                                 Sampler.GRIDSAMPLE_BILINEAR: 16}


def test_the_reference_reads_with_the_trained_op_and_exports_with_gathers():
    assert Sampler.reference("default") is Sampler.GRIDSAMPLE_BILINEAR
    assert Sampler.for_export("default") is Sampler.GATHER_BILINEAR
    assert Sampler.reference("discrete") is Sampler.for_export("discrete") is Sampler.GATHER_NEAREST


def test_an_unknown_method_or_op_is_a_one_line_error():
    with pytest.raises(RTDetrExportError, match="unknown method"):
        Sampler.parse("nearest")
    with pytest.raises(RTDetrExportError, match="unknown bilinear op"):
        Sampler.parse("default", "bicubic")


def test_a_model_changes_how_it_writes_bilinear_reading_but_not_what_it_computes():
    model = RTDETRv2(preset("tiny"))
    assert model.sampler is Sampler.GRIDSAMPLE_BILINEAR
    model.set_sampler(Sampler.GATHER_BILINEAR)
    assert model.sampler is Sampler.GATHER_BILINEAR
    with pytest.raises(ValueError, match="discrete"):
        model.set_sampler(Sampler.GATHER_NEAREST)  # nearest cells compute another function: a model built so
    discrete = RTDETRv2(preset("tiny", decoder_method="discrete"))
    assert discrete.sampler is Sampler.GATHER_NEAREST


def test_the_sidecar_names_are_the_values():
    assert [s.value for s in Sampler] == ["gather-nearest", "gather-bilinear", "gridsample-bilinear"]
    assert str(Sampler.GATHER_BILINEAR) == "gather-bilinear"
