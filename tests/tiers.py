"""The test tiers. The fast tier (`python3 -m pytest -q -m "not slow"`, README) is the inner loop: it runs in
77 s on the project's 2-core machine on two workers (pyproject addopts `-n auto`; limit 120 s; 130-137 s in one
process) and reaches every module of the package (benchmarks/fast_tier.py measures both). The slow tier holds what takes seconds per test: real-size presets,
full tiny exports with onnxslim and verification, servers, calibration. CI runs both.

The acceptance tier is the part of the slow tier that takes a minute or more per test on 2 cores (real-size
exports checked against an oracle, end-to-end runs on the trained fixtures): `python3 -m pytest -q -n 2 --dist
loadgroup -m acceptance`. CI leaves it out (`-m "not acceptance"`) to stay inside its 20-minute budget; run it when
you change what those tests prove. Each entry of ACCEPTANCE says what it cost in the run that put it there.

A test is slow when it is marked `@pytest.mark.slow`, or when it uses a fixture marked `@costly` (directly or
through another fixture): a module fixture that makes an artifact in tens of seconds puts every test that reads
it in the slow tier, so the cost is not paid by whichever fast test happens to run first.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import pytest

F = TypeVar("F", bound=Callable)


def costly(fixture_function: F) -> F:
    """Marks a fixture function (under `@pytest.fixture`) whose artifact takes seconds to make."""
    fixture_function.costly = True  # type: ignore[attr-defined]
    return fixture_function


def uses_costly_fixture(item) -> bool:
    """Whether a collected test needs a `@costly` fixture, directly or through other fixtures."""
    definitions = item._fixtureinfo.name2fixturedefs
    return any(getattr(d.func, "costly", False) for name in item.fixturenames for d in definitions.get(name, ()))


# Test functions (every parametrization) in the acceptance tier: "path::name" -> seconds, the sum of their
# parametrizations' times among the 60 longest of the full two-worker run of 2026-12-07 on the 2-core AMD EPYC
# (1123 s for 873 tests: CI's 20 minutes could not hold it with the installs). Each keeps a faster sibling in CI:
# tiny-size or 320-px parity for the same code, or the micro artifacts of the fast tier.
ACCEPTANCE: dict[str, float] = {
    "tests/model/test_dfine_parity.py::test_onnx_runtime_matches_transformers": 173.7,  # N and S at 640
    # DEIMv2-N and Pico through ONNX Runtime, every sampler, batch 1 and 4 (2026-12-07, two workers, idle: 75 s of
    # CI's time). CI keeps their PyTorch parity at the same sizes, the narrowed ONNX exports of the fast tier and the
    # CLI export + verify of a DEIMv2 folder.
    "tests/model/test_deimv2_parity.py::test_onnx_runtime_matches_transformers": 135.1,
    "tests/model/test_rtdetr_v1.py::test_a_released_size_v1_exports_to_onnx_that_matches_transformers_and_loads"
    "_from_the_original_layout": 83.4,  # r18vd, r50vd
    "tests/precision/test_precision.py::test_r18vd_reduced_precision_meets_thresholds": 55.8,
    "tests/export/test_split_export.py::test_r18vd_split_equals_the_reference_at_640_with_the_sampler_each_target"
    "_needs": 55.4,
    "tests/pipeline/test_debug_precision.py::test_debug_precision_names_the_culprit_parts_and_finds_a_float_set_that"
    "_passes": 50.4,
    "tests/model/test_gather_bilinear.py::test_r18vd_gather_export_matches_transformers_raw_and_detections": 45.9,
    "tests/model/test_image_sizes.py::test_a_736x1280_r18vd_export_matches_transformers_with_either_bilinear_op": 44.6,
    "tests/model/test_gather_bilinear.py::test_r50vd_gather_export_matches_transformers": 40.2,
    # 59 s once the NNCF IR became a candidate (2026-12-07, one-worker run at load 2.2)
    "tests/select/test_select_fixture.py::test_select_on_the_trained_fixture": 40.0,
}


def in_acceptance_tier(item) -> bool:
    return item.nodeid.split("[", 1)[0] in ACCEPTANCE


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects, so a test's tier is known when it is chosen
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if in_acceptance_tier(item):
            item.add_marker(pytest.mark.acceptance)
            item.add_marker(pytest.mark.slow)
        elif uses_costly_fixture(item):
            item.add_marker(pytest.mark.slow)
