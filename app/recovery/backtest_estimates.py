"""Money in the backtest (issue 17): what each version of a policy would have recovered, estimated from how similar
cases were recovered before. Pure functions, and one query (:func:`measured_history`). No Flask request needed.

**History.** Every case opened in the :data:`HISTORY_DAYS` days before the backtest, once planned, is one
measurement, with the dashboard's definitions (app.analytics.report): recovered = paid through Recoup (a case paid
elsewhere counts as recovered in neither rate), still-open cases stay in the denominator, and the share of its amount
due that was paid. The outcomes are read from the analytics facts (``analytics_case_facts``); a case the analytics
job has not counted yet is computed from the raw rows the same way (``app.analytics.facts.case_facts``).

**Cells.** A case is compared with the cases of its *cell*: its segment × the first touch of its plan (the channel of
its first step, a payment retry, or :data:`NO_TOUCH`: held out, or a plan with no step) × its decline reason. History
is classified by what its plan put first (its outbox row of the lowest step), not by what happened to go: what a
policy decides is the plan. A cell with fewer than ``report.MIN_SAMPLE`` measured cases backs off to segment × first
touch, then to the first touch alone (:class:`Level`); when even that is thin it is used all the same and the case
counts as *thin*; a first touch never measured falls back to every case measured (thin as well: nothing speaks for
that touch). Cases held out or sent nothing thus get the measured no-touch ("organic") rate.

**Intervals.** Each case is a Bernoulli trial with its cell's rate, and the rate itself is uncertain: it is drawn
from its cell's Jeffreys posterior Beta(k + ½, n − k + ½) (k recovered of n measured; the Bayesian twin of the Wilson
interval, statsmodels' ``proportion_confint``, shown with each basis), then each case recovers when its uniform draw
falls under its cell's rate. The 2.5th and 97.5th percentiles of :data:`DRAWS` such worlds (numpy, seeded: the same
input gives the same numbers) are the 95 % intervals of the count, the rate and each currency's amount: they hold both
what is unknown about the rates and the luck of this many cases. The point estimates are the measured rates' sums. A
case that recovers pays its amount due times its cell's measured paid share (part payments), in integer minor units,
summed per currency and never across currencies.

**Comparing.** Both versions are drawn in the same worlds: the same rate per cell and the same uniform per case, so a
case in the same cell under both recovers under both or neither, and a case moved to a better cell recovers there
whenever it would have in the worse one. The interval of the difference is read from these paired draws (two
overlapping intervals can still hide a clear difference, and two that barely touch can overstate one); when it holds
zero, the difference cannot be told.

**Too thin.** A version whose estimate rests, for more than :data:`THIN_SHARE` of its cases, on fewer than
``MIN_SAMPLE`` measured cases (or on none of its touch), or no history at all, is *too thin to tell*: the result says
so, and the page shows that instead of numbers that would look precise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

import numpy as np
import sqlalchemy as sa

from app.analytics.report import MIN_SAMPLE
from app.extensions import db
from app.models import OutboxMessage, RecoveryCase, Transaction
from app.models.analytics import CASE_MEASURES, CaseFact
from app.models.types import utcnow
from rules.plan import Plan
from rules.vocabulary import OutboxTask, StepAction

#: how far back the measured history reaches from the backtest's "now"
HISTORY_DAYS = 180
#: simulated worlds per estimate, and the generator's seed (the same backtest shows the same numbers)
DRAWS = 4000
SEED = 17
#: worlds drawn at once (bounds the memory: BLOCK × cases uniforms)
BLOCK = 500
#: a version is too thin to tell when more than this share of its cases rests on thin history
THIN_SHARE = Decimal("0.5")
#: the first touch of a case held out or planned with no step: nothing is sent (its rate is the organic one)
NO_TOUCH = "none"
#: the first touch of a held-out case that keeps its card retries (``holdout 5% with retries``): retried, never
#: contacted; kept apart from cases whose first retry is followed by messages
RETRIES_ONLY = "retries only"
#: the outbox rows that are no plan's first touch
_NOT_A_TOUCH = (OutboxTask.ESCALATION.value, OutboxTask.PAYMENT_DUE.value)
_CHUNK = 500
_ONE = Decimal(1)


class Level(StrEnum):
    """How closely the history behind an estimate matches the case, finest first."""

    CELL = "segment_touch_reason"  # same segment, first touch and decline reason
    SEGMENT = "segment_touch"  # same segment and first touch
    TOUCH = "touch"  # same first touch
    ALL = "all"  # every case measured: nothing measured with this first touch


class Verdict(StrEnum):
    """What the comparison can say."""

    NO_HISTORY = "no_history"  # nothing measured: no estimate at all
    THIN = "thin"  # a version rests mostly on thin history
    SAME = "same"  # both versions start every case the same way
    UNDECIDED = "undecided"  # the difference's interval holds zero
    BETTER = "better"  # the draft recovers more (the whole interval above zero)
    WORSE = "worse"
    ALONE = "alone"  # no running version to compare with


@dataclass
class Tally:
    """Measured cases counted together: how many, how many recovered, and the sum of the recovered ones' paid shares
    (recovered ÷ due: a ratio, the same in every currency)."""

    n: int = 0
    won: int = 0
    paid_shares: Decimal = Decimal(0)

    def add(self, won: bool, paid_share: Decimal | None) -> None:
        self.n += 1
        if won:
            self.won += 1
            self.paid_shares += paid_share if paid_share is not None else _ONE


@dataclass(frozen=True)
class Basis:
    """The history one estimate rests on: its level and key, n measured cases, k recovered through Recoup, the mean
    paid share of those recovered."""

    level: Level
    key: tuple[Any, ...]
    n: int
    won: int
    paid_share: Decimal

    @property
    def rate(self) -> Decimal:
        return Decimal(self.won) / Decimal(self.n)

    @property
    def thin(self) -> bool:
        return self.n < MIN_SAMPLE or self.level is Level.ALL

    @property
    def segment(self) -> str | None:
        return self.key[1] if self.level in (Level.CELL, Level.SEGMENT) else None

    @property
    def touch(self) -> str | None:
        if self.level is Level.ALL:
            return None
        return self.key[1] if self.level is Level.TOUCH else self.key[2]

    @property
    def reason(self) -> str | None:
        return self.key[3] if self.level is Level.CELL else None

    def wilson(self) -> tuple[Decimal, Decimal]:
        """The measured rate's 95 % Wilson interval (statsmodels)."""
        from statsmodels.stats.proportion import proportion_confint

        low, high = proportion_confint(self.won, self.n, alpha=0.05, method="wilson")
        return _quantize_rate(low), _quantize_rate(high)


def _keys(segment: str | None, touch: str, reason: str | None) -> dict[Level, tuple[Any, ...]]:
    return {Level.CELL: (Level.CELL.value, segment, touch, reason),
            Level.SEGMENT: (Level.SEGMENT.value, segment, touch),
            Level.TOUCH: (Level.TOUCH.value, touch),
            Level.ALL: _ALL}


_ALL = (Level.ALL.value,)


@dataclass
class History:
    """Measured cases, counted at every level of every cell they belong to."""

    since: datetime | None = None
    tallies: dict[tuple[Any, ...], Tally] = field(default_factory=dict)

    @property
    def n(self) -> int:
        tally = self.tallies.get(_ALL)
        return tally.n if tally else 0

    def add(self, segment: str | None, touch: str, reason: str | None, *, won: bool,
            paid_share: Decimal | None = None) -> None:
        for key in _keys(segment, touch, reason).values():
            self.tallies.setdefault(key, Tally()).add(won, paid_share)

    def basis(self, segment: str | None, touch: str, reason: str | None) -> Basis | None:
        """The finest level with at least MIN_SAMPLE measured cases; else the first touch's own (thin) cases; else
        every case (thin: nothing measured with this touch); None when nothing was measured."""
        keys = _keys(segment, touch, reason)
        for level in (Level.CELL, Level.SEGMENT, Level.TOUCH):
            tally = self.tallies.get(keys[level])
            if tally is not None and tally.n >= MIN_SAMPLE:
                return self._basis(level, keys[level], tally)
        for level in (Level.TOUCH, Level.ALL):
            tally = self.tallies.get(keys[level])
            if tally is not None and tally.n:
                return self._basis(level, keys[level], tally)
        return None

    def _basis(self, level: Level, key: tuple[Any, ...], tally: Tally) -> Basis:
        if tally.won:
            share = tally.paid_shares / tally.won
        else:  # nothing recovered here: what a recovery pays anywhere (it matters only for the rate's upper draws)
            every = self.tallies.get(_ALL)
            share = every.paid_shares / every.won if every is not None and every.won else _ONE
        return Basis(level, key, tally.n, tally.won, share)

    def distinct_n(self, keys: Iterable[tuple[Any, ...]]) -> int:
        """How many measured cases the cells ``keys`` hold together (the levels nest: a touch's cases hold its
        segments', which hold their cells')."""
        used = set(keys)
        if _ALL in used:
            return self.n
        touches = {k[1] for k in used if k[0] == Level.TOUCH.value}
        segments = {k[1:] for k in used if k[0] == Level.SEGMENT.value and k[2] not in touches}
        cells = {k for k in used if k[0] == Level.CELL.value and k[2] not in touches and (k[1], k[2]) not in segments}
        return (sum(self.tallies[(Level.TOUCH.value, t)].n for t in touches)
                + sum(self.tallies[(Level.SEGMENT.value, *s)].n for s in segments)
                + sum(self.tallies[c].n for c in cells))


@dataclass(frozen=True)
class PlannedCase:
    """One backtest case as a version planned it: where it falls among the cells, and what it owes."""

    case_id: int
    segment: str | None
    touch: str
    reason: str | None
    amount_minor: int
    currency: str


def first_touch(plan: Plan) -> str:
    """What a plan does first, as its outbox row would say (app.recovery.planning): a channel, a payment retry, or
    NO_TOUCH when no step writes a row. A held-out plan has no steps (``holdout 5%``), or only its card retries
    (``holdout 5% with retries``): RETRIES_ONLY, compared with the held-out cases of the history that were retried."""
    if plan.holdout:
        return RETRIES_ONLY if any(s.action is StepAction.RETRY_PAYMENT for s in plan.steps) else NO_TOUCH
    for step in plan.steps:
        if step.action is StepAction.RETRY_PAYMENT:
            return OutboxTask.PAYMENT_RETRY.value
        if step.channel is not None:
            return step.channel.value
    return NO_TOUCH


@dataclass(frozen=True)
class AmountEstimate:
    """Expected recovered money in one currency (integer minor units), with its 95 % interval; ``due_minor`` is what
    the cases in this currency owe."""

    currency: str
    cases: int
    due_minor: int
    expected_minor: int
    low_minor: int
    high_minor: int


@dataclass(frozen=True)
class Estimate:
    """What one version would have recovered of the backtest's cases: recovered cases expected (the measured rates'
    sum) with a 95 % interval, the rate, money per currency, and the history it rests on."""

    label: str
    cases: int
    expected: Decimal
    low: int
    high: int
    amounts: tuple[AmountEstimate, ...]
    levels: dict[Level, int]  # cases per level of history used
    thin_cases: int  # cases whose estimate rests on thin history
    basis_n: int  # distinct measured cases behind the estimate
    #: the measured cells used, each with how many of this version's cases it was used for (most used first)
    cells: tuple[tuple[Basis, int], ...] = ()

    @property
    def rate(self) -> Decimal | None:
        return _quantize_rate(self.expected / self.cases) if self.cases else None

    @property
    def rate_low(self) -> Decimal | None:
        return _quantize_rate(Decimal(self.low) / self.cases) if self.cases else None

    @property
    def rate_high(self) -> Decimal | None:
        return _quantize_rate(Decimal(self.high) / self.cases) if self.cases else None

    @property
    def thin_share(self) -> Decimal:
        return Decimal(self.thin_cases) / self.cases if self.cases else _ONE

    @property
    def too_thin(self) -> bool:
        return self.thin_share > THIN_SHARE

    def amount(self, currency: str) -> AmountEstimate | None:
        return next((a for a in self.amounts if a.currency == currency), None)


@dataclass(frozen=True)
class AmountDifference:
    currency: str
    low_minor: int
    high_minor: int


@dataclass(frozen=True)
class Estimates:
    """Both versions' estimates on the same history, and the 95 % interval of the draft's recovered cases minus the
    running version's (``difference``; per currency for money)."""

    history_n: int
    since: datetime | None
    tested: Estimate | None
    active: Estimate | None
    difference: tuple[int, int] | None = None
    amount_differences: tuple[AmountDifference, ...] = ()

    @property
    def no_history(self) -> bool:
        return self.history_n == 0

    @property
    def min_sample(self) -> int:
        """Fewer measured cases than this make a thin basis (the dashboard's threshold)."""
        return MIN_SAMPLE

    @property
    def too_thin(self) -> bool:
        return self.no_history or any(e is not None and e.too_thin for e in (self.tested, self.active))

    @property
    def currencies(self) -> list[str]:
        found = {a.currency for e in (self.tested, self.active) if e is not None for a in e.amounts}
        return sorted(found)

    @property
    def verdict(self) -> Verdict:
        if self.no_history:
            return Verdict.NO_HISTORY
        if self.too_thin:
            return Verdict.THIN
        if self.active is None or self.difference is None:
            return Verdict.ALONE
        low, high = self.difference
        if low == high == 0:
            return Verdict.SAME
        if low <= 0 <= high:
            return Verdict.UNDECIDED
        return Verdict.BETTER if low > 0 else Verdict.WORSE

    @property
    def summary(self) -> str:
        """The verdict in a sentence (English: the admin page writes its own, translated)."""
        verdict, thin = self.verdict, [e for e in (self.tested, self.active) if e is not None and e.too_thin]
        if verdict is Verdict.NO_HISTORY:
            return "No recovery history yet: too thin to tell what either version would recover."
        if verdict is Verdict.THIN:
            return (f"History too thin to tell: {', '.join(e.label for e in thin)} rests for most cases on fewer than "
                    f"{MIN_SAMPLE} measured similar cases.")
        if verdict is Verdict.SAME:
            return "Both versions start every case the same way: the same recoveries are expected."
        if verdict is Verdict.UNDECIDED:
            return "The difference between the versions cannot be told from this history (its interval holds zero)."
        if verdict is Verdict.ALONE:
            return "No running version to compare with."
        low, high = self.difference or (0, 0)
        more = "more" if verdict is Verdict.BETTER else "fewer"
        return f"The draft would recover {min(abs(low), abs(high))} to {max(abs(low), abs(high))} {more} cases."


def _quantize_rate(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.0001"))


def _percentiles(values: np.ndarray) -> tuple[int, int]:
    low, high = np.quantile(values, [0.025, 0.975], method="inverted_cdf")
    return int(low), int(high)


@dataclass
class _Version:
    label: str
    cases: list[tuple[PlannedCase, Basis]]
    cell_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    case_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    paid_if_won: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    by_currency: dict[str, np.ndarray] = field(default_factory=dict)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    amounts: dict[str, np.ndarray] = field(default_factory=dict)


def _paid_if_won(case: PlannedCase, basis: Basis) -> int:
    return int((Decimal(case.amount_minor) * basis.paid_share).to_integral_value(ROUND_HALF_EVEN))


def compare_versions(history: History, tested: tuple[str, Sequence[PlannedCase]],
                     active: tuple[str, Sequence[PlannedCase]] | None, *, draws: int = DRAWS,
                     seed: int = SEED) -> Estimates:
    """The estimates of ``tested`` and ``active`` (each a label and its planned cases) on ``history``, drawn in the
    same seeded worlds (the module's docstring says how)."""
    if history.n == 0:
        return Estimates(0, history.since, None, None)
    versions = []
    for label, planned in (tested, *((active,) if active is not None else ())):
        resolved = []
        for case in planned:
            basis = history.basis(case.segment, case.touch, case.reason)
            assert basis is not None  # history is not empty: every touch falls back to all of it at worst
            resolved.append((case, basis))
        versions.append(_Version(label, resolved))
    cells: dict[tuple[Any, ...], int] = {}
    bases: list[Basis] = []
    case_ids: dict[int, int] = {}
    for version in versions:
        for case, basis in version.cases:
            if basis.key not in cells:
                cells[basis.key] = len(bases)
                bases.append(basis)
            case_ids.setdefault(case.case_id, len(case_ids))
        version.cell_idx = np.array([cells[b.key] for _, b in version.cases], dtype=np.int64)
        version.case_idx = np.array([case_ids[c.case_id] for c, _ in version.cases], dtype=np.int64)
        version.paid_if_won = np.array([_paid_if_won(c, b) for c, b in version.cases], dtype=np.int64)
        currencies = sorted({c.currency for c, _ in version.cases})
        version.by_currency = {cur: np.array([i for i, (c, _) in enumerate(version.cases) if c.currency == cur],
                                             dtype=np.int64) for cur in currencies}
        version.counts = np.zeros(draws, dtype=np.int64)
        version.amounts = {cur: np.zeros(draws, dtype=np.int64) for cur in currencies}
    alpha = np.array([b.won + 0.5 for b in bases])
    beta = np.array([b.n - b.won + 0.5 for b in bases])
    rng = np.random.default_rng(seed)
    for start in range(0, draws, BLOCK):
        size = min(BLOCK, draws - start)
        rates = rng.beta(alpha, beta, size=(size, len(bases)))
        luck = rng.random((size, len(case_ids)))
        for version in versions:
            won = (luck[:, version.case_idx] < rates[:, version.cell_idx]).astype(np.int64)
            version.counts[start:start + size] = won.sum(axis=1)
            for cur, cols in version.by_currency.items():
                version.amounts[cur][start:start + size] = won[:, cols] @ version.paid_if_won[cols]
    estimates = [_estimate(history, v) for v in versions]
    difference: tuple[int, int] | None = None
    amount_differences: tuple[AmountDifference, ...] = ()
    if len(versions) == 2:
        first, second = versions
        difference = _percentiles(first.counts - second.counts)
        none = np.zeros(draws, dtype=np.int64)
        amount_differences = tuple(
            AmountDifference(cur, *_percentiles(first.amounts.get(cur, none) - second.amounts.get(cur, none)))
            for cur in sorted(set(first.amounts) | set(second.amounts)))
    return Estimates(history.n, history.since, estimates[0], estimates[1] if len(estimates) > 1 else None,
                     difference, amount_differences)


def _estimate(history: History, version: _Version) -> Estimate:
    expected = sum((b.rate for _, b in version.cases), Decimal(0))
    amounts = []
    for cur, cols in version.by_currency.items():
        rows = [version.cases[i] for i in cols]
        mean = sum((b.rate * _paid_if_won(c, b) for c, b in rows), Decimal(0))
        low, high = _percentiles(version.amounts[cur])
        amounts.append(AmountEstimate(cur, len(rows), sum(c.amount_minor for c, _ in rows),
                                      int(mean.to_integral_value(ROUND_HALF_EVEN)), low, high))
    low, high = _percentiles(version.counts) if version.cases else (0, 0)
    used: dict[tuple[Any, ...], tuple[Basis, int]] = {}
    for _, basis in version.cases:
        used[basis.key] = (basis, used.get(basis.key, (basis, 0))[1] + 1)
    return Estimate(
        label=version.label, cases=len(version.cases), expected=expected.quantize(Decimal("0.1")), low=low, high=high,
        amounts=tuple(sorted(amounts, key=lambda a: (-a.cases, a.currency))),
        levels=dict(Counter(b.level for _, b in version.cases)),
        thin_cases=sum(1 for _, b in version.cases if b.thin),
        basis_n=history.distinct_n(b.key for _, b in version.cases),
        cells=tuple(sorted(used.values(), key=lambda u: (-u[1], u[0].level != Level.CELL, str(u[0].key)))))


# -- the history, from the database ----------------------------------------------------------------------------


def measured_history(*, now: datetime | None = None, days: int = HISTORY_DAYS) -> History:
    """The planned cases opened in the ``days`` days up to ``now``, each counted in its cells with its outcome (from
    its analytics fact, else from the raw rows)."""
    from app.analytics.facts import case_facts

    now = now or utcnow()
    since = now - timedelta(days=days)
    rows = db.session.execute(
        sa.select(RecoveryCase.id, RecoveryCase.segment, RecoveryCase.holdout, RecoveryCase.policy_version_id,
                  Transaction.decline_reason, CaseFact.case_id, CaseFact.failed_minor, CaseFact.recovered_n,
                  CaseFact.recovered_minor)
        .join(Transaction, Transaction.id == RecoveryCase.transaction_id)
        .outerjoin(CaseFact, CaseFact.case_id == RecoveryCase.id)
        .where(RecoveryCase.opened_at >= since, RecoveryCase.opened_at <= now)
    ).all()
    touches = _first_touches([r[0] for r in rows])
    outcomes: dict[int, tuple[int, int, int]] = {r[0]: (int(r[6] or 0), int(r[7] or 0), int(r[8] or 0))
                                                 for r in rows if r[5] is not None}
    missing = [r[0] for r in rows if r[5] is None]
    at = {name: CASE_MEASURES.index(name) for name in ("failed_minor", "recovered_n", "recovered_minor")}
    for start in range(0, len(missing), _CHUNK):
        for cid, fact in case_facts(missing[start:start + _CHUNK]).items():
            outcomes[cid] = (fact.measures[at["failed_minor"]], fact.measures[at["recovered_n"]],
                             fact.measures[at["recovered_minor"]])
    history = History(since=since)
    for cid, segment, holdout, version_id, reason, *_ in rows:
        touch = touches.get(cid)
        if holdout:  # nothing, or only card retries (``with retries``)
            touch = NO_TOUCH if touch is None else RETRIES_ONLY
        elif touch is None:
            if version_id is None:
                continue  # never planned (yet): it says nothing about a plan
            touch = NO_TOUCH  # planned with no step
        failed_minor, recovered_n, recovered_minor = outcomes.get(cid, (0, 0, 0))
        share = Decimal(recovered_minor) / Decimal(failed_minor) if recovered_n and failed_minor > 0 else None
        history.add(segment, touch, reason, won=bool(recovered_n), paid_share=share)
    return history


def _first_touches(case_ids: list[int]) -> dict[int, str]:
    """{case id: the channel of its plan's first step's outbox row} for the cases that have one."""
    first: dict[int, tuple[int, str]] = {}
    for start in range(0, len(case_ids), _CHUNK):
        for cid, step, channel in db.session.execute(
            sa.select(OutboxMessage.case_id, OutboxMessage.step_n, OutboxMessage.channel)
            .where(OutboxMessage.case_id.in_(case_ids[start:start + _CHUNK]), OutboxMessage.step_n.is_not(None),
                   OutboxMessage.channel.not_in(_NOT_A_TOUCH))
        ):
            if cid not in first or step < first[cid][0]:
                first[cid] = (step, channel)
    return {cid: channel for cid, (_, channel) in first.items()}
