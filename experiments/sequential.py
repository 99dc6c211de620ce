"""Always-valid intervals for a difference between a variant and control: read them every day, or every minute,
and the chance that one ever excludes the true effect is still at most ``alpha``.

A fixed-horizon interval (effect +- 1.96 standard errors) is valid once, at a sample size fixed in advance; looked at
daily and acted on at the first significant look, it declares far more than 5% of A/A tests significant. The
interval here is the two-sided normal-mixture confidence sequence (``experiments.boundaries``; Howard et al. 2021,
Waudby-Smith et al. 2024), the mSPRT of Johari et al. (2022) and GrowthBook's sequential testing:

    effect +- sqrt(V) * sqrt((1 + rho / N) * (log(1 + N / rho) + 2 log(1 / alpha)))

with ``V`` the variance of the effect, ``N`` the units of both arms (intrinsic time: ``V`` is ``sigma**2 / N``) and
``rho`` the mixture's scale, tuned to the planned sample size of the two arms (``boundaries.mixture_scale``): the
interval is narrowest there and valid at every size. The always-valid p-value is ``min(1, 1 / Lambda)``, with
``Lambda`` the mixture likelihood ratio of "no effect" (the mSPRT statistic); it is at most ``alpha`` exactly when
the interval excludes 0, and by Ville's inequality the chance that it ever falls to ``alpha`` under no effect is at
most ``alpha``. A dashboard that keeps earlier reads may show the running minimum, which is valid too.

The variance is estimated from the data (each arm's own, unpooled), which makes this an asymptotic confidence
sequence: the simulations in tests/experiments and bench/experiments.py check its error rates at Recoup's volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.boundaries import (
    mixture_scale,
    one_sided_bound,
    two_sided_bound,
    two_sided_log_martingale,
)
from experiments.estimates import Difference


@dataclass(frozen=True)
class SequentialInterval:
    """An always-valid ``1 - alpha`` interval for variant minus control, and the always-valid p-value of "no
    difference"."""

    effect: float
    lower: float
    upper: float
    alpha: float
    p_value: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (the same as ``p_value < alpha``; at exactly ``alpha`` 0 is its edge)."""
        return self.lower > 0 or self.upper < 0


def always_valid_interval(diff: Difference, planned_units: float, alpha: float = 0.05) -> SequentialInterval:
    """The interval for ``diff``, with the mixture tuned to ``planned_units`` (units of both arms)."""
    scale = mixture_scale(planned_units, alpha)
    effect = diff.effect
    if diff.units == 0 or math.isinf(diff.variance) or math.isnan(diff.variance):
        return SequentialInterval(effect, -math.inf, math.inf, alpha, 1.0)
    if diff.variance <= 0:  # every case alike in both arms: nothing varies, what is seen is the effect
        return SequentialInterval(effect, effect, effect, alpha, 1.0 if effect == 0 else 0.0)
    n = float(diff.units)
    per_unit = math.sqrt(diff.variance / n)  # sigma / N: one standardised unit of the sum, on the effect's scale
    half_width = two_sided_bound(n, alpha, scale) * per_unit
    s = effect / per_unit
    log_ratio = two_sided_log_martingale(s, n, scale)
    p_value = 1.0 if log_ratio <= 0 else math.exp(-log_ratio)
    return SequentialInterval(effect, effect - half_width, effect + half_width, alpha, p_value)


def always_valid_lower_bound(diff: Difference, planned_units: float, alpha: float = 0.05) -> float:
    """A one-sided always-valid lower bound for variant minus control: the chance that it is ever above the true
    effect is at most ``alpha`` (the one-sided normal mixture, tuned to ``planned_units``)."""
    scale = mixture_scale(planned_units, alpha, one_sided=True)
    if diff.units == 0 or math.isinf(diff.variance) or math.isnan(diff.variance):
        return -math.inf
    if diff.variance <= 0:
        return diff.effect
    n = float(diff.units)
    return diff.effect - one_sided_bound(n, alpha, scale) * math.sqrt(diff.variance / n)
