"""The two test tiers. The fast tier (`python3 -m pytest -q -m "not slow"`, README) is the inner loop: it runs in
about two minutes on the project's 2-core machine and reaches every module of the package
(benchmarks/fast_tier.py measures both). The slow tier holds what takes seconds per test: real-size presets,
full tiny exports with onnxslim and verification, servers, calibration. CI runs both.

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


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects, so a test's tier is known when it is chosen
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if uses_costly_fixture(item):
            item.add_marker(pytest.mark.slow)
