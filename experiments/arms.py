"""One arm of an experiment as the statistics read it: counts and sums over its cases, never the cases themselves.

An *arm* is the cases assigned to one variant (or to control, or to the holdout). A *unit* is one case (a failed
payment); a *conversion* is a case recovered. Money stays integer minor units of one currency here (the caller
converts first): per arm, the sum of the amount recovered per case and the sum of its squares; it becomes a float
only inside the statistics. From sums and sums of squares come a mean and its variance exactly; the pre-period sums
(each case's customer's payments before the experiment) and the cross sum (amount recovered times pre-period
payments, per case) are what CUPED needs (``experiments.cuped``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class ExperimentError(ValueError):
    """Inputs the statistics cannot use: a negative count, more recoveries than cases, sums that no set of cases
    could have, an arm the split does not name, ..."""


def _count(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExperimentError(f"{owner}: {name} must be an integer, not {type(value).__name__} {value!r}")
    if value < 0:
        raise ExperimentError(f"{owner}: {name} must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class Moments:
    """``n`` values summarised by their ``total`` and the total of their squares (``total_sq``): enough for their
    mean and their sample variance (divided by n - 1)."""

    n: int
    total: int
    total_sq: int

    def __post_init__(self) -> None:
        for name in ("n", "total", "total_sq"):
            _count("moments", name, getattr(self, name))
        if self.total * self.total > self.n * self.total_sq:
            raise ExperimentError(
                f"moments: a total of {self.total} over {self.n} values needs a sum of squares of at least "
                f"{self.total * self.total / max(self.n, 1):.0f}, got {self.total_sq}")

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance, from integers until the last division (0 below two values)."""
        if self.n < 2:
            return 0.0
        return (self.n * self.total_sq - self.total * self.total) / (self.n * (self.n - 1))


@dataclass(frozen=True)
class ArmData:
    """One arm's cases, summed.

    ``units``: cases assigned; ``conversions``: of which recovered; ``sum_amount`` / ``sum_amount_sq``: the amount
    recovered per case (0 for a case not recovered), minor units, summed and squared-and-summed over all the arm's
    cases; ``pre_sum`` / ``pre_sum_sq``: the same for each case's customer's payments in the pre-period (the CUPED
    covariate); ``cross_sum``: amount recovered times pre-period payments, summed per case;
    ``sum_seconds_to_recover`` / ``..._sq``: seconds from failure to recovery over the recovered cases;
    ``events``: guardrail events among the arm's cases, by metric name (``experiments.guardrails``), each case
    counted once per metric.
    """

    name: str
    units: int
    conversions: int = 0
    sum_amount: int = 0
    sum_amount_sq: int = 0
    pre_sum: int = 0
    pre_sum_sq: int = 0
    cross_sum: int = 0
    sum_seconds_to_recover: int = 0
    sum_seconds_to_recover_sq: int = 0
    events: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ExperimentError(f"an arm needs a name, got {self.name!r}")
        owner = f"arm {self.name!r}"
        for name in ("units", "conversions", "sum_amount", "sum_amount_sq", "pre_sum", "pre_sum_sq", "cross_sum",
                     "sum_seconds_to_recover", "sum_seconds_to_recover_sq"):
            _count(owner, name, getattr(self, name))
        if self.conversions > self.units:
            raise ExperimentError(f"{owner}: {self.conversions} conversions out of {self.units} units")
        if self.sum_amount and not self.conversions:
            raise ExperimentError(f"{owner}: an amount recovered ({self.sum_amount}) without a recovered case")
        if self.sum_seconds_to_recover and not self.conversions:
            raise ExperimentError(f"{owner}: time to recover without a recovered case")
        try:
            self.amount, self.pre, self.time_to_recover  # noqa: B018  (each checks its sums)
        except ExperimentError as error:
            raise ExperimentError(f"{owner}: {error}") from None
        if self.cross_sum * self.cross_sum > self.sum_amount_sq * self.pre_sum_sq:
            raise ExperimentError(f"{owner}: cross_sum {self.cross_sum} exceeds what the sums of squares allow")
        events = {}
        for metric, count in dict(self.events).items():
            if not isinstance(metric, str) or not metric:
                raise ExperimentError(f"{owner}: an event metric needs a name, got {metric!r}")
            if _count(owner, f"events[{metric!r}]", count) > self.units:
                raise ExperimentError(f"{owner}: {count} {metric} events out of {self.units} units")
            events[metric] = count
        object.__setattr__(self, "events", MappingProxyType(events))

    @property
    def rate(self) -> float:
        """The recovery rate: conversions / units (0 with no units)."""
        return self.conversions / self.units if self.units else 0.0

    @property
    def amount(self) -> Moments:
        """The amount recovered per case (minor units), over all the arm's cases."""
        return Moments(self.units, self.sum_amount, self.sum_amount_sq)

    @property
    def pre(self) -> Moments:
        """The customer's pre-period payments per case (minor units), over all the arm's cases."""
        return Moments(self.units, self.pre_sum, self.pre_sum_sq)

    @property
    def time_to_recover(self) -> Moments:
        """Seconds from failure to recovery, over the recovered cases only."""
        return Moments(self.conversions, self.sum_seconds_to_recover, self.sum_seconds_to_recover_sq)

    def event_count(self, metric: str) -> int:
        """Cases with a ``metric`` guardrail event (0 when none was counted)."""
        return self.events.get(metric, 0)


def arms_by_name(arms: object, control: str) -> dict[str, ArmData]:
    """The arms by name, control among them, names unique."""
    if not isinstance(arms, list | tuple):
        raise ExperimentError(f"arms must be a list of ArmData, got {type(arms).__name__}")
    found: dict[str, ArmData] = {}
    for arm in arms:
        if not isinstance(arm, ArmData):
            raise ExperimentError(f"arms must be ArmData, got {type(arm).__name__}")
        if arm.name in found:
            raise ExperimentError(f"two arms are named {arm.name!r}")
        found[arm.name] = arm
    if control not in found:
        raise ExperimentError(f"the control arm {control!r} is not among the arms {sorted(found)}")
    if len(found) < 2:
        raise ExperimentError("an experiment needs control and at least one variant")
    return found


def pool_arms(name: str, arms: list[ArmData]) -> ArmData:
    """Several arms as one, their sums added: the treated side of a holdout comparison is every arm Recoup works."""
    if not arms:
        raise ExperimentError("no arms to pool")
    events: dict[str, int] = {}
    for arm in arms:
        for metric, count in arm.events.items():
            events[metric] = events.get(metric, 0) + count
    return ArmData(
        name,
        units=sum(a.units for a in arms),
        conversions=sum(a.conversions for a in arms),
        sum_amount=sum(a.sum_amount for a in arms),
        sum_amount_sq=sum(a.sum_amount_sq for a in arms),
        pre_sum=sum(a.pre_sum for a in arms),
        pre_sum_sq=sum(a.pre_sum_sq for a in arms),
        cross_sum=sum(a.cross_sum for a in arms),
        sum_seconds_to_recover=sum(a.sum_seconds_to_recover for a in arms),
        sum_seconds_to_recover_sq=sum(a.sum_seconds_to_recover_sq for a in arms),
        events=events,
    )
