"""Band ratios: integer rows, every row once, in proportion to the devices' weights."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maniple.errors import ManipleError
from maniple.tiling.bands import speed_weights, split_rows

weights_st = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e3)), min_size=1, max_size=8
).filter(lambda w: any(x > 0 for x in w))


def exact_quota(rows: int, weights: list[float], d: int) -> Fraction:
    return rows * Fraction(weights[d]) / sum(Fraction(w) for w in weights)


@settings(max_examples=300, deadline=None)
@given(weights=weights_st, rows=st.integers(min_value=0, max_value=2000))
def test_bands_cover_every_row_once_in_device_order(weights: list[float], rows: int) -> None:
    positive = sum(1 for w in weights if w > 0)
    if positive > rows:
        with pytest.raises(ManipleError, match="use fewer devices or a larger input"):
            split_rows(rows, weights)
        return
    bands = split_rows(rows, weights)
    assert len(bands) == len(weights)
    assert bands[0][0] == 0 and bands[-1][1] == rows
    for (a, b), (c, _) in zip(bands, bands[1:], strict=False):
        assert a <= b == c
    for d, (a, b) in enumerate(bands):
        assert (b - a == 0) == (weights[d] == 0), "empty exactly when the weight is zero"


@settings(max_examples=300, deadline=None)
@given(weights=weights_st, rows=st.integers(min_value=1, max_value=2000))
def test_bands_within_one_row_of_their_share(weights: list[float], rows: int) -> None:
    quotas = [exact_quota(rows, weights, d) for d in range(len(weights))]
    if any(0 < q < 1 for q in quotas) or sum(q > 0 for q in quotas) > rows:
        return  # a positive share under one row is raised to one row (next test)
    for (a, b), q in zip(split_rows(rows, weights), quotas, strict=True):
        assert abs((b - a) - q) < 1


def test_tiny_positive_share_still_gets_a_row_taken_from_the_largest_surplus() -> None:
    assert split_rows(4, [100, 1, 1, 1]) == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert split_rows(10, [100, 1, 0]) == ((0, 9), (9, 10), (10, 10))


def test_largest_remainder_examples() -> None:
    assert split_rows(10, [1, 1, 1]) == ((0, 4), (4, 7), (7, 10))  # tie: earliest first
    assert split_rows(224, [2, 1, 1]) == ((0, 112), (112, 168), (168, 224))
    assert split_rows(7, [0, 1]) == ((0, 0), (0, 7))


@pytest.mark.parametrize(
    ("rows", "weights", "message"),
    [
        (10, [], "at least one device weight"),
        (10, [1, -1], "negative weight"),
        (10, [0, 0], "at least one device needs a positive weight"),
        (10, [1, float("nan")], "must be finite"),
        (10, [1, float("inf")], "must be finite"),
        (2, [1, 1, 1], "3 devices with positive weight but only 2 rows"),
        (-1, [1], "non-negative integer"),
        (2.5, [1], "non-negative integer"),
    ],
)
def test_split_rows_errors(rows: int, weights: list[float], message: str) -> None:
    with pytest.raises(ManipleError, match=message):
        split_rows(rows, weights)


def test_speed_weights_are_inverse_times_normalised() -> None:
    weights = speed_weights([100.0, 200.0, 50.0])
    assert weights == pytest.approx((2 / 7, 1 / 7, 4 / 7))
    assert sum(weights) == pytest.approx(1.0)
    assert split_rows(70, weights) == ((0, 20), (20, 30), (30, 70))


@pytest.mark.parametrize("times", [[], [1.0, 0.0], [1.0, -3.0], [float("inf")], [float("nan")]])
def test_speed_weights_errors(times: list[float]) -> None:
    with pytest.raises(ManipleError):
        speed_weights(times)
