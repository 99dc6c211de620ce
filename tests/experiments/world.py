"""A synthetic world for the experiment statistics, whose true effects the test sets: cases arrive day by day, are
assigned to arms with the split the world really uses (which may not be the planned one), and are recovered with
each arm's true rate. Seeded and vectorised with numpy: every array is runs x days x arms.

``daily_counts`` gives cumulative counts per daily look (enough for rates, SRM and guardrails); ``cases`` draws
per-case amounts and pre-period payments for one read (enough for amounts, CUPED and the holdout lift).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from experiments.arms import ArmData


@dataclass(frozen=True)
class World:
    """``rates``: each arm's true recovery rate; ``split``: the share of cases each arm really gets (default
    equal); ``daily_units``: cases a day (Poisson); ``days``: looks, one a day; ``cap``: arrivals stop once this
    many cases have come (the last look is then exactly at ``cap``); ``events``: true guardrail event rates,
    metric -> arm -> rate."""

    rates: Mapping[str, float]
    daily_units: float = 150.0
    days: int = 60
    split: Mapping[str, float] | None = None
    cap: int | None = None
    events: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def arms(self) -> list[str]:
        return list(self.rates)

    @property
    def shares(self) -> np.ndarray:
        split = self.split or {name: 1.0 for name in self.rates}
        weights = np.array([split[name] for name in self.rates], dtype=float)
        return weights / weights.sum()


@dataclass(frozen=True)
class Counts:
    """Cumulative counts at each daily look: ``units``, ``conversions`` and ``events[metric]``, each runs x days x
    arms of int64."""

    world: World
    units: np.ndarray
    conversions: np.ndarray
    events: Mapping[str, np.ndarray]
    sum_amount: np.ndarray | None = None
    sum_amount_sq: np.ndarray | None = None

    def arms_at(self, run: int, day: int) -> list[ArmData]:
        """The arms as the statistics read them at one look of one run."""
        money = self.sum_amount is not None and self.sum_amount_sq is not None
        return [
            ArmData(name, int(self.units[run, day, i]), int(self.conversions[run, day, i]),
                    sum_amount=int(self.sum_amount[run, day, i]) if money else 0,  # type: ignore[index]
                    sum_amount_sq=int(self.sum_amount_sq[run, day, i]) if money else 0,  # type: ignore[index]
                    events={m: int(e[run, day, i]) for m, e in self.events.items()})
            for i, name in enumerate(self.world.arms)
        ]


def daily_totals(world: World, runs: int, rng: np.random.Generator) -> np.ndarray:
    """New cases per run and day (runs x days), Poisson, stopped at ``cap`` when the world has one."""
    new = rng.poisson(world.daily_units, (runs, world.days))
    if world.cap is None:
        return new
    cumulative = np.minimum(new.cumsum(axis=1), world.cap)
    return np.diff(cumulative, axis=1, prepend=0)


def daily_counts(world: World, runs: int, seed: int, money: Money | None = None) -> Counts:
    """``runs`` experiments in ``world``, looked at once a day; with ``money``, the sums of the amounts recovered
    too (each recovered case draws its amount due)."""
    rng = np.random.default_rng(seed)
    totals = daily_totals(world, runs, rng)
    units = rng.multinomial(totals, world.shares)  # runs x days x arms
    rates = np.array([world.rates[name] for name in world.arms])
    conversions = rng.binomial(units, rates)
    events = {}
    for metric, by_arm in world.events.items():
        events[metric] = rng.binomial(units, np.array([by_arm.get(name, 0.0) for name in world.arms])).cumsum(axis=1)
    counts = Counts(world, units.cumsum(axis=1), conversions.cumsum(axis=1), events)
    if money is None:
        return counts
    cell = np.repeat(np.arange(conversions.size), conversions.ravel())  # one entry per recovered case
    due = np.rint(money.due_median * np.exp(money.due_sigma * rng.standard_normal(cell.size))).astype(np.int64)
    sums = np.bincount(cell, weights=due, minlength=conversions.size).reshape(conversions.shape)
    squares = np.bincount(cell, weights=due.astype(float) ** 2, minlength=conversions.size).reshape(conversions.shape)
    return Counts(world, counts.units, counts.conversions, events,
                  np.rint(sums).astype(np.int64).cumsum(axis=1), np.rint(squares).astype(np.int64).cumsum(axis=1))


@dataclass(frozen=True)
class Money:
    """Per-case money: each case's amount due is lognormal (``due_median`` minor units, log-sd ``due_sigma``); the
    customer's pre-period payments are lognormal too, with log-correlation ``pre_correlation`` with the amount due.
    A recovered case recovers its amount due; whether it is recovered does not depend on the amount, so the amount
    recovered per case has mean ``rate * mean_due``."""

    due_median: float = 5_000.0
    due_sigma: float = 0.8
    pre_median: float = 20_000.0
    pre_sigma: float = 0.6
    pre_correlation: float = 0.7

    @property
    def mean_due(self) -> float:
        return float(self.due_median * np.exp(self.due_sigma**2 / 2))


def cases(rates: Mapping[str, float], split: Mapping[str, float], n: int, rng: np.random.Generator,
          money: Money = Money()) -> list[ArmData]:
    """``n`` cases split at random by ``split``, each arm's sums as ``ArmData`` (amounts in integer minor units)."""
    names = list(rates)
    weights = np.array([split[name] for name in names], dtype=float)
    arm = rng.choice(len(names), size=n, p=weights / weights.sum())
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    due = np.rint(money.due_median * np.exp(money.due_sigma * z1)).astype(np.int64)
    rho = money.pre_correlation
    pre = np.rint(money.pre_median * np.exp(money.pre_sigma * (rho * z1 + np.sqrt(1 - rho**2) * z2))).astype(np.int64)
    recovered = rng.random(n) < np.array([rates[name] for name in names])[arm]
    amount = np.where(recovered, due, 0)
    seconds = np.where(recovered, rng.integers(600, 7 * 86_400, n), 0)
    result = []
    for i, name in enumerate(names):
        m = arm == i
        y, x, s = amount[m], pre[m], seconds[m]
        result.append(ArmData(
            name, int(m.sum()), int(recovered[m].sum()), int(y.sum()), _sq(y), int(x.sum()), _sq(x),
            _dot(y, x), int(s.sum()), _sq(s)))
    return result


def _dot(a: np.ndarray, b: np.ndarray) -> int:
    """The sum of products, exact: int64 while it cannot overflow, else Python integers."""
    if a.size and float(np.abs(a).max()) * float(np.abs(b).max()) * a.size < 2**62:
        return int(np.dot(a.astype(np.int64), b.astype(np.int64)))
    return int(np.dot(a.astype(object), b.astype(object)))


def _sq(values: np.ndarray) -> int:
    return _dot(values, values)


def first_significant(flags: Sequence[bool]) -> int | None:
    """The first look at which a test was declared significant (None if never)."""
    for day, flag in enumerate(flags):
        if flag:
            return day
    return None
