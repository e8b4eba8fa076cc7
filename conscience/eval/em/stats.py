"""Rates with percentile-bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rate:
    """A share with its 95% bootstrap interval; ``n`` counts the rows it is over."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def text(self, digits: int = 1) -> str:
        """``12.5% [8.0, 17.2]`` (percentages), or ``-`` when there are no rows."""
        if self.value is None:
            return "-"
        return (
            f"{100 * self.value:.{digits}f}% "
            f"[{100 * (self.low or 0):.{digits}f}, {100 * (self.high or 0):.{digits}f}]"
        )


def bootstrap_rate(
    hits: Sequence[bool], *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> Rate:
    """The share of True in ``hits`` with a percentile bootstrap interval."""
    values = np.asarray(hits, dtype=float)
    if values.size == 0:
        return Rate(None, None, None, 0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[draws].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Rate(float(values.mean()), float(low), float(high), int(values.size))
