"""The choice `select` makes, on hand-made points: the Pareto front of latency against AP, the fastest point within
the AP budget, and the closest one when none is within it."""

from __future__ import annotations

import pytest

from rtdetr_export.select.pareto import Point, choose, dominates, pareto_front, within_budget

# The Xeon (AMX) numbers of the issue, with made-up APs: a slow accurate baseline, fast INT8/bf16 rows.
ROWS = [Point("ort-fp32", 211.0, 0.638), Point("ort-int8", 101.0, 0.636), Point("ov-f32:fp32", 202.0, 0.638),
        Point("ov-bf16:fp32", 51.0, 0.631), Point("ov-f32:int8", 58.0, 0.635), Point("ov-bf16:int8", 45.0, 0.631)]


def test_a_point_that_is_slower_and_no_more_accurate_is_dominated():
    assert dominates(Point("a", 10, 0.5), Point("b", 20, 0.5))
    assert dominates(Point("a", 10, 0.6), Point("b", 10, 0.5))
    assert not dominates(Point("a", 10, 0.5), Point("b", 10, 0.5))  # equal: neither dominates
    assert not dominates(Point("a", 10, 0.4), Point("b", 20, 0.5))  # a trade-off


def test_the_front_keeps_every_trade_off_fastest_first():
    # ov-bf16:fp32 (51 ms, 0.631) is beaten by ov-bf16:int8 (45 ms, same AP), ort-fp32 by ov-f32:fp32 (faster, same
    # AP); ort-int8 stays: nothing faster is as accurate (0.636 against ov-f32:int8's 0.635).
    assert pareto_front(ROWS) == ["ov-bf16:int8", "ov-f32:int8", "ort-int8", "ov-f32:fp32"]


def test_equal_points_are_both_on_the_front():
    assert pareto_front([Point("a", 10, 0.5), Point("b", 10, 0.5), Point("c", 11, 0.4)]) == ["a", "b"]


def test_the_fastest_point_within_the_budget_is_chosen():
    assert choose(ROWS, 0.638, 0.005).chosen == "ov-f32:int8"  # 0.635 >= 0.633; the bf16 rows lose 0.007
    assert choose(ROWS, 0.638, 0.01).chosen == "ov-bf16:int8"
    assert choose(ROWS, 0.638, 0.0).chosen == "ov-f32:fp32"  # no loss at all: the faster of the two FP32 rows


def test_an_untrusted_point_is_never_chosen_however_fast():
    rows = ROWS + [Point("broken", 1.0, 0.70, trusted=False)]
    assert not within_budget(rows[-1], 0.638, 0.5)
    assert choose(rows, 0.638, 0.005).chosen == "ov-f32:int8"


def test_nothing_within_the_budget_names_the_closest_and_its_shortfall():
    choice = choose(ROWS, 0.638, -0.002)  # a negative budget asks for a gain no row has
    assert choice.chosen is None
    assert choice.closest == "ov-f32:fp32"  # the most accurate, and the faster of the two at that AP
    assert choice.shortfall == pytest.approx(0.002)


def test_no_points_no_choice():
    assert choose([], 0.5, 0.01).chosen is None and choose([], 0.5, 0.01).closest is None
