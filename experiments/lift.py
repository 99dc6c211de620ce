"""Holdout lift: what Recoup recovers that would have been recovered anyway, with a confidence interval.

The *holdout* is an arm of cases Recoup leaves alone (no messages, no retries); what it recovers is recovered anyway
(the customer pays by themselves, the merchant's own retries). The *lift* is the treated arms' value minus the
holdout's, per case:

- ``rate``: recovery rate with Recoup minus without, in rate points (a fraction), with Newcombe's hybrid score
  interval for a difference of independent proportions (Newcombe 1998, method 10; ``statsmodels``'
  ``confint_proportions_2indep(method="newcomb")``), which keeps its coverage near the nominal level at small
  counts and extreme rates where the Wald interval does not;
- ``amount_per_case``: amount recovered per case (minor units, as a float) with Recoup minus without, with Welch's
  interval (``mean difference +- t * sqrt(s1**2 / n1 + s2**2 / n2)``, Welch-Satterthwaite degrees of freedom; t
  quantile from ``scipy.stats.t``);
- ``recovered_cases`` and ``recovered_amount``: the same lifts times the treated cases: how many cases and how much
  money Recoup recovered that would not have been recovered otherwise, with the intervals scaled alike.

These are per-read intervals, like the dashboard's other intervals: each read covers the truth with probability
``level``. A decision taken at the first good-looking read belongs to ``experiments.sequential``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm  # type: ignore[import-untyped]
from scipy.stats import t as student_t
from statsmodels.stats.proportion import confint_proportions_2indep  # type: ignore[import-untyped]

from experiments.arms import ArmData, ExperimentError


@dataclass(frozen=True)
class Interval:
    """``estimate`` with a ``level`` (0.95) confidence interval ``[lower, upper]``."""

    estimate: float
    lower: float
    upper: float
    level: float

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    def scaled(self, factor: float) -> Interval:
        return Interval(self.estimate * factor, self.lower * factor, self.upper * factor, self.level)


@dataclass(frozen=True)
class HoldoutLift:
    """Recovered with Recoup minus recovered anyway (see the module docstring for each interval)."""

    treated_rate: float
    holdout_rate: float
    rate: Interval
    amount_per_case: Interval
    recovered_cases: Interval
    recovered_amount: Interval


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ExperimentError(f"the confidence level must be between 0 and 1, got {level!r}")
    return float(level)


def welch_interval(treated: ArmData, holdout: ArmData, level: float = 0.95) -> Interval:
    """Amount recovered per case, treated minus holdout, with Welch's interval."""
    level = _check_level(level)
    a, b = treated.amount, holdout.amount
    estimate = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Interval(estimate, -math.inf, math.inf, level)
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(estimate, estimate, estimate, level)
    df = (va + vb) ** 2 / ((va * va / (a.n - 1) if va else 0.0) + (vb * vb / (b.n - 1) if vb else 0.0))
    q = float(student_t.ppf(0.5 + level / 2, df)) if math.isfinite(df) else float(norm.ppf(0.5 + level / 2))
    return Interval(estimate, estimate - q * se, estimate + q * se, level)


def newcombe_interval(treated: ArmData, holdout: ArmData, level: float = 0.95) -> Interval:
    """Recovery rate, treated minus holdout, with Newcombe's hybrid score interval."""
    level = _check_level(level)
    estimate = treated.rate - holdout.rate
    if treated.units == 0 or holdout.units == 0:
        return Interval(estimate, -1.0, 1.0, level)
    lower, upper = confint_proportions_2indep(treated.conversions, treated.units, holdout.conversions,
                                              holdout.units, method="newcomb", compare="diff", alpha=1 - level)
    return Interval(estimate, float(lower), float(upper), level)


def holdout_lift(treated: ArmData, holdout: ArmData, level: float = 0.95) -> HoldoutLift:
    """The lift of ``treated`` (all the cases Recoup worked, summed over its arms) over ``holdout``."""
    if not isinstance(treated, ArmData) or not isinstance(holdout, ArmData):
        raise ExperimentError("the holdout lift needs two ArmData")
    rate = newcombe_interval(treated, holdout, level)
    amount = welch_interval(treated, holdout, level)
    return HoldoutLift(treated.rate, holdout.rate, rate, amount, rate.scaled(treated.units),
                       amount.scaled(treated.units))

