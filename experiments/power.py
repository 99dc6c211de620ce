"""Before launch: how many cases (and days) an experiment needs to detect an effect, or what effect a duration can
detect, for the always-valid test it will actually be read with.

Definitions. The *effect* is an absolute rise in the recovery rate over control (0.05 = 5 points). *Power* is the
chance that the test declares a variant that has this effect significant by the planned sample size. The
*minimum detectable effect* (MDE) of a sample size is the effect detected with that power. With several variants
each is compared with control at ``alpha / k`` (Bonferroni, ``experiments.corrections``), and the plan is for the
comparison that has the fewest cases (the variant with the smallest share). A holdout takes its share of the cases
but is compared with nobody here (``experiments.lift``).

How it matches the sequential test. The always-valid interval (``experiments.sequential``) is tuned to the planned
sample size ``N*``; at ``N = N*`` its half-width is ``c * sqrt(V)`` with a constant
``c = sqrt((1 + 1/r) (log(1 + r) + 2 log(1/alpha)))``, ``r = 2 log(1/alpha) + log(1 + 2 log(1/alpha))`` (about 3.04
at alpha 0.05, where a fixed-horizon test uses 1.96). A variant with effect ``d`` is then significant at the last
look with probability ``Phi(d / sqrt(V) - c)``, so the plan asks for the ``N`` where ``d = (c + z_power) sqrt(V)``,
with ``V = (p_c (1 - p_c) / q_c + p_v (1 - p_v) / q_v) / N`` over the two arms' cases (``q``: their shares of them).
This is power computed for the mSPRT directly, at the last look alone: reads before it can only add detections, so
the power at the planned size is at least what is asked (the simulations in tests/experiments and
bench/experiments.py measure it). It needs about 1.9 times the cases of a test looked at only once
(``PowerPlan.inflation``), the price of reading it every day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from scipy.optimize import brentq  # type: ignore[import-untyped]
from scipy.stats import norm  # type: ignore[import-untyped]

from experiments.arms import ExperimentError
from experiments.boundaries import _check_alpha, mixture_scale, two_sided_bound
from experiments.corrections import per_comparison_alpha
from experiments.split import planned_shares

#: per-unit variance of a two-arm difference, from the two arms' shares of the pair's cases
PairVariance = Callable[[float, float], float]


@dataclass(frozen=True)
class History:
    """What the analytics history says about the cases an experiment will see: ``cases`` failed payments in
    ``days`` days, of which ``recovered`` were recovered."""

    cases: int
    recovered: int
    days: int

    def __post_init__(self) -> None:
        if self.days <= 0 or self.cases <= 0 or not 0 <= self.recovered <= self.cases:
            raise ExperimentError(f"a history needs days > 0, cases > 0 and 0 <= recovered <= cases, got {self}")

    @property
    def daily_units(self) -> float:
        return self.cases / self.days

    @property
    def baseline_rate(self) -> float:
        return self.recovered / self.cases


@dataclass(frozen=True)
class PowerPlan:
    """A plan: ``effect`` detected with ``power`` at ``alpha`` in ``units`` cases (all arms together), ``days`` at
    ``daily_units`` a day. ``fixed_horizon_units``: what a test read only once, at the end, would need."""

    baseline_rate: float
    effect: float
    units: int
    days: int
    daily_units: float
    alpha: float
    power: float
    comparisons: int
    fixed_horizon_units: int

    @property
    def alpha_per_comparison(self) -> float:
        return self.alpha / self.comparisons

    @property
    def inflation(self) -> float:
        """Cases needed by the always-valid test over those of a test read once."""
        return self.units / self.fixed_horizon_units


def sequential_critical_value(alpha: float) -> float:
    """``c``: the always-valid half-width, in standard errors, at the sample size it is tuned to."""
    return two_sided_bound(1.0, alpha, mixture_scale(1.0, alpha))


def fixed_horizon_critical_value(alpha: float) -> float:
    """``z_(1 - alpha/2)``: the half-width of an interval read once."""
    return float(norm.ppf(1 - _check_alpha(alpha) / 2))


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ExperimentError(f"{name} must be a rate between 0 and 1, got {value!r}")
    return float(value)


def _compared(weights: Mapping[str, float], control: str, holdout: str | None) -> tuple[dict[str, float], list[str]]:
    shares = planned_shares(weights)
    if control not in shares:
        raise ExperimentError(f"the split gives no weight to the control arm {control!r}")
    if holdout is not None and holdout not in shares:
        raise ExperimentError(f"the split gives no weight to the holdout {holdout!r}")
    variants = [name for name in shares if name not in (control, holdout)]
    if not variants:
        raise ExperimentError("the split has no variant to compare with control")
    return shares, variants


def _proportions(baseline: float, effect: float) -> PairVariance:
    if not 0 < baseline + effect < 1:
        raise ExperimentError(f"a rise of {effect:.4f} from {baseline:.4f} leaves the rates between 0 and 1")
    variant = baseline + effect
    return lambda q_c, q_v: baseline * (1 - baseline) / q_c + variant * (1 - variant) / q_v


def _units_for(pair_variance: PairVariance, effect: float, shares: Mapping[str, float], control: str,
               variants: list[str], critical: float, z_power: float) -> float:
    """Cases in all arms so that each comparison reaches ``effect = (critical + z_power) sqrt(V)``."""
    needed = 0.0
    for variant in variants:
        pair = shares[control] + shares[variant]
        sigma2 = pair_variance(shares[control] / pair, shares[variant] / pair)
        needed = max(needed, sigma2 * ((critical + z_power) / effect) ** 2 / pair)
    return needed


def required_units(baseline_rate: float, effect: float, weights: Mapping[str, float], control: str, *,
                   alpha: float = 0.05, power: float = 0.8, holdout: str | None = None,
                   sequential: bool = True) -> int:
    """Cases in all arms for a rise of ``effect`` over ``baseline_rate`` to be detected with ``power``
    (``sequential=False``: by a test read once, for comparison)."""
    baseline = _check_rate("the baseline rate", baseline_rate)
    _check_rate("power", power)
    if isinstance(effect, bool) or not isinstance(effect, int | float) or effect <= 0:
        raise ExperimentError(f"the effect must be a positive rise in the rate, got {effect!r}")
    shares, variants = _compared(weights, control, holdout)
    each = per_comparison_alpha(alpha, len(variants))
    critical = sequential_critical_value(each) if sequential else fixed_horizon_critical_value(each)
    needed = _units_for(_proportions(baseline, effect), effect, shares, control, variants, critical,
                        float(norm.ppf(power)))
    return math.ceil(needed - 1e-9)


def minimum_detectable_effect(baseline_rate: float, units: float, weights: Mapping[str, float], control: str, *,
                              alpha: float = 0.05, power: float = 0.8, holdout: str | None = None) -> float:
    """The smallest rise over ``baseline_rate`` that ``units`` cases (all arms) detect with ``power`` by the
    always-valid test; an error when even a rise to a rate of 1 would not be."""
    baseline = _check_rate("the baseline rate", baseline_rate)
    _check_rate("power", power)
    if isinstance(units, bool) or not isinstance(units, int | float) or units <= 0:
        raise ExperimentError(f"the number of cases must be positive, got {units!r}")
    shares, variants = _compared(weights, control, holdout)
    critical = sequential_critical_value(per_comparison_alpha(alpha, len(variants)))
    z_power = float(norm.ppf(power))

    def shortfall(effect: float) -> float:
        needed = _units_for(_proportions(baseline, effect), effect, shares, control, variants, critical, z_power)
        return needed - units

    highest = (1 - baseline) * (1 - 1e-9)
    if shortfall(highest) > 0:
        raise ExperimentError(f"{units:.0f} cases cannot detect even a rise to a rate of 1 from {baseline:.2%}")
    return float(brentq(shortfall, 1e-9, highest, xtol=1e-7))


def _days(units: int, daily_units: float) -> int:
    if isinstance(daily_units, bool) or not isinstance(daily_units, int | float) or not daily_units > 0:
        raise ExperimentError(f"the expected cases per day must be positive, got {daily_units!r}")
    return max(1, math.ceil(units / daily_units - 1e-9))


def plan_for_effect(daily_units: float, baseline_rate: float, effect: float, weights: Mapping[str, float],
                    control: str, *, alpha: float = 0.05, power: float = 0.8, holdout: str | None = None) -> PowerPlan:
    """The cases and days a rise of ``effect`` needs at ``daily_units`` cases a day (all arms)."""
    units = required_units(baseline_rate, effect, weights, control, alpha=alpha, power=power, holdout=holdout)
    fixed = required_units(baseline_rate, effect, weights, control, alpha=alpha, power=power, holdout=holdout,
                           sequential=False)
    comparisons = len(_compared(weights, control, holdout)[1])
    return PowerPlan(float(baseline_rate), float(effect), units, _days(units, daily_units), float(daily_units),
                     float(alpha), float(power), comparisons, fixed)


def plan_for_duration(daily_units: float, days: int, baseline_rate: float, weights: Mapping[str, float],
                      control: str, *, alpha: float = 0.05, power: float = 0.8,
                      holdout: str | None = None) -> PowerPlan:
    """The rise ``days`` days at ``daily_units`` cases a day can detect (the plan's ``units`` are then the
    cases needed for that rise, at most the cases the days bring)."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ExperimentError(f"the duration must be a whole number of days, got {days!r}")
    _days(1, daily_units)
    effect = minimum_detectable_effect(baseline_rate, daily_units * days, weights, control, alpha=alpha,
                                       power=power, holdout=holdout)
    plan = plan_for_effect(daily_units, baseline_rate, effect, weights, control, alpha=alpha, power=power,
                           holdout=holdout)
    return replace(plan, days=days)  # the effect is solved to 1e-7: its cases may round up past the last day
