"""One read of a running experiment: everything the results page shows, from the arms' counts and sums.

- the sample-ratio check over every arm (``experiments.srm``): with an alert, no other number can be trusted;
- per variant against control, per metric: the primary metric, the recovery rate in count (``recovery_rate``) and
  in amount (``amount_per_case``, optionally CUPED-adjusted), and the secondary one, ``time_to_recover`` (over the
  recovered cases; lower is better). Each comparison has its always-valid interval at ``alpha / k`` for ``k``
  variants (Bonferroni), its significance by Holm's procedure over the ``k`` variants (``experiments.corrections``;
  each metric is its own family, read side by side, never combined), and the Bayesian read (chance to beat control,
  expected loss);
- the guardrails (``experiments.guardrails``), which say when a variant must be stopped;
- with a holdout, the lift of every arm Recoup works over it (``experiments.lift``).

``planned_units`` is the plan's cases over all arms (``experiments.power``); each comparison's interval is tuned to
its two arms' planned share of them (time to recover too, though its units are the recovered cases, fewer: its
interval is then narrowest later than planned, and valid all the same). A holdout takes part in the sample-ratio
check and the lift, not in the comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from experiments.arms import ArmData, ExperimentError, arms_by_name, pool_arms
from experiments.bayes import DRAWS, BayesRead, beta_chance_to_beat, normal_chance_to_beat
from experiments.boundaries import _check_alpha, check_planned_units
from experiments.corrections import holm_significant, per_comparison_alpha
from experiments.cuped import cuped_amount_estimates, cuped_theta
from experiments.estimates import (
    Difference,
    Estimate,
    amount_estimate,
    difference,
    rate_estimate,
    time_to_recover_estimate,
)
from experiments.guardrails import Guardrail, GuardrailCheck, check_guardrails
from experiments.lift import HoldoutLift, holdout_lift
from experiments.sequential import SequentialInterval, always_valid_interval
from experiments.split import planned_shares
from experiments.srm import SampleRatio, SrmLevel, check_sample_ratio


class Metric(StrEnum):
    RECOVERY_RATE = "recovery_rate"
    AMOUNT_PER_CASE = "amount_per_case"
    TIME_TO_RECOVER = "time_to_recover"


#: the metrics where less is better
LOWER_IS_BETTER = frozenset({Metric.TIME_TO_RECOVER})


@dataclass(frozen=True)
class Comparison:
    """One variant against control on one metric."""

    metric: Metric
    variant: str
    difference: Difference
    interval: SequentialInterval
    significant: bool
    bayes: BayesRead

    @property
    def better(self) -> bool:
        """Significant, in the direction that is good for this metric."""
        good = self.difference.effect < 0 if self.metric in LOWER_IS_BETTER else self.difference.effect > 0
        return self.significant and good


@dataclass(frozen=True)
class Readout:
    """One read; ``stop_reasons`` says what must stop the test or its reading now."""

    control: str
    holdout: str | None
    sample_ratio: SampleRatio
    comparisons: tuple[Comparison, ...]
    guardrails: tuple[GuardrailCheck, ...]
    lift: HoldoutLift | None
    alpha: float
    alpha_per_comparison: float
    cuped_theta: float | None

    def comparison(self, metric: Metric, variant: str) -> Comparison:
        for found in self.comparisons:
            if found.metric is metric and found.variant == variant:
                return found
        raise KeyError((metric, variant))

    @property
    def stop_reasons(self) -> tuple[str, ...]:
        reasons = [check.message for check in self.guardrails if check.stop]
        if self.sample_ratio.level is SrmLevel.ALERT:
            reasons.insert(0, f"sample-ratio mismatch: p = {self.sample_ratio.p_value:.2g}; the split is not as "
                              "planned, so no result can be trusted until it is explained")
        return tuple(reasons)


def read_experiment(arms: Sequence[ArmData], control: str, weights: Mapping[str, float], planned_units: float, *,
                    alpha: float = 0.05, holdout: str | None = None, guardrails: Sequence[Guardrail] = (),
                    cuped: bool = False, seed: int = 0, draws: int = DRAWS) -> Readout:
    """Read the experiment whose arms are ``arms`` (control and holdout among them); ``seed`` and ``draws`` are the
    Bayesian read's (the same seed, the same read)."""
    alpha = _check_alpha(alpha)
    check_planned_units(planned_units)
    by_name = arms_by_name(list(arms), control)
    shares = planned_shares(weights, by_name)
    if holdout is not None and (holdout not in by_name or holdout == control):
        raise ExperimentError(f"the holdout {holdout!r} must be an arm other than control")
    worked = [a for name, a in by_name.items() if name != holdout]
    variants = [a for a in worked if a.name != control]
    if not variants:
        raise ExperimentError("there is no variant to compare with control")
    each = per_comparison_alpha(alpha, len(variants))
    base = by_name[control]

    amounts: Mapping[str, Estimate]
    theta = None
    if cuped:
        theta = cuped_theta(worked)
        amounts = cuped_amount_estimates(worked)
    else:
        amounts = {a.name: amount_estimate(a) for a in worked}
    rate_bayes = beta_chance_to_beat(base, variants, seed=seed, draws=draws)

    comparisons: list[Comparison] = []
    for metric in Metric:
        found = []
        for variant in variants:
            pair_units = planned_units * (shares[control] + shares[variant.name])
            if metric is Metric.RECOVERY_RATE:
                diff = difference(rate_estimate(base), rate_estimate(variant))
                bayes = rate_bayes[variant.name]
            elif metric is Metric.AMOUNT_PER_CASE:
                diff = difference(amounts[control], amounts[variant.name])
                bayes = normal_chance_to_beat(diff)
            else:
                diff = difference(time_to_recover_estimate(base), time_to_recover_estimate(variant))
                bayes = normal_chance_to_beat(diff, higher_is_better=False)
            found.append((variant.name, diff, always_valid_interval(diff, pair_units, each), bayes))
        significant = holm_significant([interval.p_value for _, _, interval, _ in found], alpha)
        comparisons += [Comparison(metric, name, diff, interval, sig, bayes)
                        for (name, diff, interval, bayes), sig in zip(found, significant, strict=True)]

    checks = check_guardrails(worked, control, guardrails, {a.name: weights[a.name] for a in worked},
                              planned_units * sum(shares[a.name] for a in worked), alpha)
    lift = None
    if holdout is not None:
        lift = holdout_lift(pool_arms("recoup", worked), by_name[holdout])
    return Readout(control, holdout, check_sample_ratio({a.name: a.units for a in by_name.values()}, weights),
                   tuple(comparisons), checks, lift, alpha, each, theta)
