"""Guardrails: metrics a variant must not harm, whatever it does for recoveries, and that stop a test when it does.

A *guardrail* names an event counted per case (``ArmData.events``: a case counts once per metric) and the most
harm the merchant accepts, ``max_harm``: an absolute rise in the event's rate per case over control (0.002 = 0.2
points more opt-outs). The usual ones are ``GuardrailMetric``: opt-outs, STOP replies, complaints, and card-network
retry fees (cases that incurred one).

A variant *harms* a guardrail when its one-sided always-valid lower bound for (variant rate - control rate) is
above ``max_harm``: with confidence ``1 - alpha`` the harm is beyond what is accepted. The bound is the one-sided
normal mixture (``experiments.sequential.always_valid_lower_bound``), so checking on every read does not raise the
chance of a false stop. Bonferroni over the checks (variants times guardrails) keeps the chance that any of them
ever stops a harmless test at most ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from experiments.arms import ArmData, ExperimentError, arms_by_name
from experiments.boundaries import check_planned_units
from experiments.corrections import per_comparison_alpha
from experiments.estimates import difference, event_rate_estimate
from experiments.sequential import always_valid_lower_bound
from experiments.split import planned_shares


class GuardrailMetric(StrEnum):
    OPT_OUT = "opt_out"
    STOP = "stop"
    COMPLAINT = "complaint"
    RETRY_FEE = "retry_fee"


@dataclass(frozen=True)
class Guardrail:
    """``metric``: the event's name in ``ArmData.events``; ``max_harm``: the rise in its rate per case accepted."""

    metric: str
    max_harm: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ExperimentError(f"a guardrail needs a metric name, got {self.metric!r}")
        harm = self.max_harm
        if isinstance(harm, bool) or not isinstance(harm, int | float) or not 0 <= harm < 1:
            raise ExperimentError(f"guardrail {self.metric}: max_harm is a rate rise in [0, 1), got {harm!r}")


@dataclass(frozen=True)
class GuardrailCheck:
    """One variant against control on one guardrail: the rates, the rise, its always-valid lower bound, and
    whether the test must stop."""

    variant: str
    metric: str
    control_rate: float
    variant_rate: float
    lower_bound: float
    max_harm: float
    alpha: float

    @property
    def harm(self) -> float:
        return self.variant_rate - self.control_rate

    @property
    def stop(self) -> bool:
        return self.lower_bound > self.max_harm

    @property
    def message(self) -> str:
        """What a person reads: ``stop: variant B harms opt_out (...)`` or ``ok: ...``."""
        detail = (f"{self.variant_rate:.2%} against {self.control_rate:.2%} for control; the rise is at least "
                  f"{self.lower_bound * 100:+.2f} points with {1 - self.alpha:.1%} confidence, "
                  f"{self.max_harm * 100:.2f} accepted")
        if self.stop:
            return f"stop: variant {self.variant} harms {self.metric} ({detail})"
        return f"ok: variant {self.variant} on {self.metric} ({detail})"


def check_guardrails(arms: Sequence[ArmData], control: str, guardrails: Sequence[Guardrail],
                     weights: Mapping[str, float], planned_units: float,
                     alpha: float = 0.05) -> tuple[GuardrailCheck, ...]:
    """Every variant against ``control`` on every guardrail, at ``alpha`` over all the checks together.
    ``weights`` is the planned split and ``planned_units`` the planned cases of all arms (they tune where each
    bound is tightest)."""
    check_planned_units(planned_units)
    by_name = arms_by_name(list(arms), control)
    shares = planned_shares(weights, by_name)
    metrics = [g.metric for g in guardrails]
    if len(set(metrics)) != len(metrics):
        raise ExperimentError(f"a guardrail is named twice: {metrics}")
    variants = [a for name, a in by_name.items() if name != control]
    if not guardrails:
        return ()
    each = per_comparison_alpha(alpha, len(variants) * len(guardrails))
    base = by_name[control]
    checks = []
    for variant in variants:
        pair_units = planned_units * (shares[control] + shares[variant.name])
        for guardrail in guardrails:
            metric = guardrail.metric
            diff = difference(event_rate_estimate(base, metric), event_rate_estimate(variant, metric))
            bound = always_valid_lower_bound(diff, pair_units, each)
            checks.append(GuardrailCheck(variant.name, guardrail.metric, diff.control, diff.variant, bound,
                                         float(guardrail.max_harm), alpha))
    return tuple(checks)
