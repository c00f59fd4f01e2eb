"""The latency histogram merges exactly (any grouping of windows gives the same sum) and its
percentiles stay within a bucket's half-width of the true nearest-rank value."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.usage_histogram import (
    GROWTH,
    HIGH_MS,
    LOW_MS,
    N_BUCKETS,
    Histogram,
    bucket_bounds,
    bucket_of,
)
from tests.budget import examples

latency = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
latencies = st.lists(latency, max_size=200)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(latency)
def test_a_latency_falls_in_its_bucket(value: float) -> None:
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value < high or (value >= HIGH_MS and math.isinf(high)) or value == low


@given(latencies, latencies, latencies)
def test_merge_is_associative_and_commutative(
    a: list[float], b: list[float], c: list[float]
) -> None:
    ha, hb, hc = Histogram.of(a), Histogram.of(b), Histogram.of(c)
    left, right = ha.merge(hb).merge(hc), ha.merge(hb.merge(hc))
    assert left.counts == right.counts == hc.merge(hb).merge(ha).counts
    assert left.total == right.total == len(a) + len(b) + len(c)
    assert (left.min_ms, left.max_ms) == (right.min_ms, right.max_ms)
    assert math.isclose(left.sum_ms, right.sum_ms, rel_tol=1e-9, abs_tol=1e-6)


@given(latencies, st.integers(min_value=0, max_value=200))
def test_split_windows_roll_up_to_the_whole(values: list[float], cut: int) -> None:
    whole = Histogram.of(values)
    rolled = Histogram.of(values[:cut]).merge(Histogram.of(values[cut:]))
    assert rolled.counts == whole.counts
    for q in (0.5, 0.95, 0.99):
        assert rolled.percentile(q) == whole.percentile(q)


@settings(max_examples=examples(300))
@given(
    st.lists(st.floats(min_value=LOW_MS, max_value=HIGH_MS / 2), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_percentile_is_within_half_a_bucket_of_the_truth(values: list[float], q: float) -> None:
    estimate = Histogram.of(values).percentile(q)
    truth = nearest_rank(values, q)
    assert estimate is not None
    assert (
        truth / math.sqrt(GROWTH) * (1 - 1e-9) <= estimate <= truth * math.sqrt(GROWTH) * (1 + 1e-9)
    )
    assert min(values) <= estimate <= max(values)


@given(latencies)
def test_percentiles_are_ordered_and_bounded(values: list[float]) -> None:
    h = Histogram.of(values)
    if not values:
        assert h.percentile(0.5) is None
        assert h.mean is None
        return
    p50, p95, p100 = h.percentile(0.5), h.percentile(0.95), h.percentile(1.0)
    assert p50 is not None
    assert p95 is not None
    assert p100 is not None
    assert min(values) <= p50 <= p95 <= p100 <= max(values)


def test_parts_round_trip_dense_and_sparse() -> None:
    h = Histogram.of([0.01, 1, 2, 3, 250, 99_999, 5e6])
    dense = Histogram.from_parts(h.counts, h.sum_ms, h.min_ms, h.max_ms)
    sparse = Histogram.from_parts(h.sparse(), h.sum_ms, h.min_ms, h.max_ms)
    assert dense == sparse == h
    assert len(h.counts) == N_BUCKETS


def test_bad_latencies_count_as_zero() -> None:
    h = Histogram.of([math.nan, -5.0, math.inf])
    assert h.total == 3
    assert h.sum_ms == 0
    assert h.max_ms == 0
