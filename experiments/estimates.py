"""Each arm's value of a metric with the variance of that value, and a variant's difference from control.

An *estimate* is a value computed from one arm (a rate, a mean) with its variance (its squared standard error) and
the units it was computed from. A *difference* is variant minus control; the arms are independent, so its variance
is the sum of theirs (unpooled: each arm's own variance, which is what the always-valid interval needs under the
alternative as well as under the null).

- recovery rate: conversions / units, variance ``p (1 - p) / n``;
- amount recovered per case: the mean over all cases (0 for one not recovered), variance ``s**2 / n``;
- time to recover: the mean over recovered cases only (so a variant that recovers more, harder cases may look
  slower: a secondary metric, read beside the rate), variance ``s**2 / n``;
- a guardrail's event rate: events / units, like the recovery rate.

An arm with fewer than two units has no variance to speak of: its estimate's variance is infinite, and every
interval built on it is the whole line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.arms import ArmData, Moments


@dataclass(frozen=True)
class Estimate:
    """``value`` computed from ``units`` units, with ``variance`` the variance of ``value``."""

    value: float
    variance: float
    units: int


@dataclass(frozen=True)
class Difference:
    """Variant minus control: ``effect`` with ``variance`` (the sum of the two estimates' variances) and ``units``
    (the units of both arms: the intrinsic time of the always-valid interval)."""

    control: float
    variant: float
    variance: float
    units: int

    @property
    def effect(self) -> float:
        return self.variant - self.control

    @property
    def relative(self) -> float | None:
        """The effect as a fraction of control (None when control is 0)."""
        return self.effect / self.control if self.control else None


def proportion_estimate(count: int, units: int) -> Estimate:
    """``count / units`` with the binomial variance ``p (1 - p) / units``."""
    if units < 2:
        return Estimate(count / units if units else 0.0, math.inf, units)
    p = count / units
    return Estimate(p, p * (1 - p) / units, units)


def mean_estimate(moments: Moments) -> Estimate:
    """The mean of ``moments`` with variance ``s**2 / n``."""
    if moments.n < 2:
        return Estimate(moments.mean, math.inf, moments.n)
    return Estimate(moments.mean, moments.variance / moments.n, moments.n)


def rate_estimate(arm: ArmData) -> Estimate:
    return proportion_estimate(arm.conversions, arm.units)


def amount_estimate(arm: ArmData) -> Estimate:
    return mean_estimate(arm.amount)


def time_to_recover_estimate(arm: ArmData) -> Estimate:
    return mean_estimate(arm.time_to_recover)


def event_rate_estimate(arm: ArmData, metric: str) -> Estimate:
    return proportion_estimate(arm.event_count(metric), arm.units)


def difference(control: Estimate, variant: Estimate) -> Difference:
    """Variant minus control."""
    return Difference(control.value, variant.value, control.variance + variant.variance, control.units + variant.units)
