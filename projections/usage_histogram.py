"""A mergeable latency histogram: fixed log-spaced buckets, so two windows' histograms add up
exactly (bucket by bucket) and a percentile read from the sum is the same whichever way the
windows were grouped. Bucket 0 holds [0, LOW_MS); bucket i >= 1 holds
[LOW_MS * GROWTH**(i-1), LOW_MS * GROWTH**i); the last bucket is open-ended.

A percentile is the nearest-rank value's bucket, reported as the bucket's geometric middle and
clamped to the exact min and max: within a factor sqrt(GROWTH) (about ±4.4%) of the true value."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GROWTH = 2 ** (1 / 8)
LOW_MS = 0.05
HIGH_MS = 120_000.0  # above this every latency shares the last bucket
N_BUCKETS = math.ceil(math.log(HIGH_MS / LOW_MS, GROWTH)) + 2
_LOG_GROWTH = math.log(GROWTH)


def bucket_of(latency_ms: float) -> int:
    if not latency_ms >= LOW_MS:  # also NaN and negatives
        return 0
    index = int(math.log(latency_ms / LOW_MS) / _LOG_GROWTH) + 1
    return min(index, N_BUCKETS - 1)


def bucket_bounds(index: int) -> tuple[float, float]:
    """[low, high) of a bucket; the last one's high is infinity."""
    if index == 0:
        return 0.0, LOW_MS
    high = math.inf if index == N_BUCKETS - 1 else LOW_MS * GROWTH**index
    return LOW_MS * GROWTH ** (index - 1), high


def _clean(latency_ms: float) -> float:
    return latency_ms if math.isfinite(latency_ms) and latency_ms > 0 else 0.0


@dataclass
class Histogram:
    """Counts per bucket plus the exact count, sum, min and max (all of which merge exactly)."""

    counts: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)
    total: int = 0
    sum_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0

    @classmethod
    def of(cls, latencies: Iterable[float]) -> Histogram:
        h = cls()
        for latency in latencies:
            h.add(latency)
        return h

    @classmethod
    def from_parts(
        cls, buckets: Sequence[int] | Mapping[int, int], sum_ms: float, min_ms: float, max_ms: float
    ) -> Histogram:
        counts = [0] * N_BUCKETS
        items = buckets.items() if isinstance(buckets, Mapping) else enumerate(buckets)
        for index, count in items:
            counts[min(int(index), N_BUCKETS - 1)] += int(count)
        total = sum(counts)
        return cls(counts, total, sum_ms, min_ms if total else math.inf, max_ms if total else 0.0)

    def add(self, latency_ms: float) -> None:
        latency_ms = _clean(latency_ms)
        self.counts[bucket_of(latency_ms)] += 1
        self.total += 1
        self.sum_ms += latency_ms
        self.min_ms = min(self.min_ms, latency_ms)
        self.max_ms = max(self.max_ms, latency_ms)

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram of both (neither is changed)."""
        return Histogram(
            [a + b for a, b in zip(self.counts, other.counts, strict=True)],
            self.total + other.total,
            self.sum_ms + other.sum_ms,
            min(self.min_ms, other.min_ms),
            max(self.max_ms, other.max_ms),
        )

    def merge_in(self, other: Histogram) -> None:
        for index, count in enumerate(other.counts):
            if count:
                self.counts[index] += count
        self.total += other.total
        self.sum_ms += other.sum_ms
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)

    def sparse(self) -> dict[int, int]:
        return {i: c for i, c in enumerate(self.counts) if c}

    def percentile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (0 < q <= 1), estimated; None when empty."""
        if self.total == 0:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = math.sqrt(low * high) if index and math.isfinite(high) else high
                return min(max(middle, self.min_ms), self.max_ms)
        return self.max_ms  # not reached: the counts add up to total

    @property
    def mean(self) -> float | None:
        return self.sum_ms / self.total if self.total else None
