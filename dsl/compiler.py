"""Syntax tree -> CompiledPolicy: one generated Python function that decides segment, offers and steps.

The function is generated as source and compiled once per policy version (cached by version and source hash).
It reads only the facts the policy mentions, each once, into locals; every comparison is guarded so that a
missing or malformed fact makes that comparison false, and a missing exchange rate makes a money comparison
false: evaluating a policy never raises on bad facts.

``decide`` runs once per case, so it takes two shortcuts that keep its answers exact (tests/dsl/
test_compiled_fast_paths.py checks them against ``explain``, which is generated the plain way): a money fact is
compared with a constant through its float first, and goes to Decimal only when the float cannot settle it; and
it computes the number of its Decision among all the policy can make and returns that Decision, built once.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from dsl import nodes as n
from dsl.arms import arm_policy, experiment_of
from dsl.errors import Diagnostic, PolicyError, PolicyValidationError
from dsl.formatter import format_expr
from dsl.parser import parse
from dsl.schema import FIELDS, Type
from dsl.validator import DEFAULT_RETRY_BUDGET, validate
from rules.durations import DurationError, parse_iso
from rules.money import FxRates, MoneyError, convert_amount
from rules.policy import (
    BusinessHoursRule,
    CadenceRule,
    CompiledArm,
    CompiledExperiment,
    CompiledOffer,
    CompiledPlan,
    CompiledPolicy,
    CompiledStep,
    ConditionResult,
    Decision,
    HoursWindow,
    OverrideRule,
    PolicyTiming,
    QuietHoursRule,
)
from rules.vocabulary import Channel, Priority, StepAction

# --- run-time helpers the generated code calls -------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_EMPTY: Mapping[str, Any] = {}


def _number(value: object) -> int | Decimal | None:
    if value.__class__ is int:
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str | float):
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            return None
        return result if result.is_finite() else None
    return None


def _money_amount(amount: object) -> Decimal | None:
    """An amount that is not a string: an int or a Decimal is fine; a float is refused (never money)."""
    if isinstance(amount, int) and not isinstance(amount, bool):
        return Decimal(amount)
    if isinstance(amount, Decimal) and amount.is_finite():
        return amount
    return None


def _money_cmp(
    rates: FxRates | None, a: tuple[Decimal, str] | None, op: str, b: tuple[Decimal, str] | None
) -> bool:
    if a is None or b is None:
        return False
    try:
        left = convert_amount(a[0], a[1], b[1], rates)
    except MoneyError:
        return False
    return _OPS[op](left, b[0])


def _money_cmp2(
    rates: FxRates | None, amount: Decimal, currency: object, op: str, target: Decimal, to: str
) -> bool:
    """``amount currency <op> target to``, converting through the rates; no rate makes it false."""
    if not isinstance(currency, str):
        return False
    try:
        left = convert_amount(amount, currency, to, rates)
    except MoneyError:
        return False
    return _OPS[op](left, target)


def _money_value(amount: object, currency: object) -> Decimal | None:
    """An amount as the reference code reads it (a decimal string, an int or a finite Decimal) in a currency."""
    if type(amount) is str:
        try:
            parsed = Decimal(amount)
        except InvalidOperation:
            return None
        value = parsed if parsed.is_finite() else None
    else:
        value = _money_amount(amount)
    return value if type(currency) is str else None


def _money_pair(amount: object, currency: object) -> tuple[Decimal, str] | None:
    """``(amount, currency)`` for the general money comparison, or None."""
    value = _money_value(amount, currency)
    return None if value is None or type(currency) is not str else (value, currency)


def _money_exact(
    rates: FxRates | None, amount: object, currency: object, op: str, target: Decimal, to: str
) -> bool:
    """``amount currency <op> target to`` the exact way: what the float filter of ``decide`` cannot settle."""
    value = _money_value(amount, currency)
    if value is None:
        return False
    if currency == to:
        return _OPS[op](value, target)
    return _money_cmp2(rates, value, currency, op, target, to)


def _float_bounds(target: Decimal) -> tuple[float, float]:
    """The floats nearest ``target`` from below and above (the same float when it is exact).

    ``float(text)`` is correctly rounded, and rounding is monotonic, so for a decimal text whose float is ``f``:
    ``f > high`` proves the exact value is above ``target``, ``f < low`` proves it below; between the two (or
    for a text ``float`` refuses or makes infinite), only the Decimal can tell.
    """
    nearest = float(target)
    exact = Decimal(nearest)
    if exact == target:
        return nearest, nearest
    if exact < target:
        return nearest, math.nextafter(nearest, math.inf)
    return math.nextafter(nearest, -math.inf), nearest


def _parse_instant(value: object) -> datetime | None:
    """A time the facts carry: a datetime (rules.facts.Facts), or ISO 8601 text (facts as JSON)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _age(now: object, then: object) -> int | None:
    a, b = _parse_instant(now), _parse_instant(then)
    return int((a - b).total_seconds()) if a and b else None


def _local(instant: object, zone: object) -> tuple[int, int] | None:
    """(minutes since midnight, weekday) of ``instant`` in ``zone`` (UTC when unknown)."""
    moment = _parse_instant(instant)
    if moment is None:
        return None
    if isinstance(zone, str) and zone:
        try:
            moment = moment.astimezone(ZoneInfo(zone))
        except (ValueError, KeyError, OSError):
            moment = moment.astimezone(UTC)
    else:
        moment = moment.astimezone(UTC)
    return moment.hour * 60 + moment.minute, moment.weekday()


def _duration_fact(value: object) -> int | None:
    """Seconds, from a number of seconds or an ISO 8601 duration like P3D / PT4H (rules.durations reads it)."""
    number = _number(value)
    if number is not None:
        return int(number)
    if not isinstance(value, str):
        return None
    try:
        return int(parse_iso(value).total_seconds())
    except DurationError:
        return None


def _time_fact(value: object) -> int | None:
    """Minutes since midnight, from "HH:MM" or an hour number."""
    if isinstance(value, str) and ":" in value:
        try:
            hours, minutes = value.split(":")[:2]
            return int(hours) * 60 + int(minutes)
        except ValueError:
            return None
    number = _number(value)
    return int(number * 60) if number is not None else None


# --- code generation ----------------------------------------------------------------------------------------

_GROUP_VAR = {"customer": "_c", "transaction": "_t", "decline": "_d", "history": "_h", "predicted": "_p"}


class _Generator:
    """The straightforward translation: every fact read up front, money as Decimal. ``explain`` uses it, and it
    is the reference the optimised ``decide`` (``_DecideGenerator``) is tested against."""

    def __init__(self, prefix: str = "_k") -> None:
        self.prefix = prefix
        self.consts: dict[str, object] = {}
        self.const_names: dict[tuple[str, object], str] = {}
        self.field_vars: dict[str, str] = {}
        self.prologue: list[str] = []

    def const(self, value: object) -> str:
        key = (type(value).__name__, value if not isinstance(value, set | list) else tuple(value))
        if isinstance(value, frozenset):
            key = ("frozenset", tuple(sorted(map(repr, value))))
        name = self.const_names.get(key)
        if name is None:
            name = f"{self.prefix}{len(self.consts)}"
            self.consts[name] = value
            self.const_names[key] = name
        return name

    def field(self, path: str) -> str:
        var = self.field_vars.get(path)
        if var is not None:
            return var
        var = f"v{len(self.field_vars)}"
        self.field_vars[path] = var
        group, _, key = path.partition(".")
        g = _GROUP_VAR[group]
        kind = FIELDS[path].type
        p = self.prologue
        if path == "customer.vip":
            p.append(f"{var} = _c.get('vip')")
            p.append(f"if {var}.__class__ is not bool:")
            p.append("    _tags = _c.get('tags')")
            p.append(f"    {var} = _tags.__class__ is list and 'vip' in _tags")
        elif path == "customer.lifetime_value":
            self._money_field(var, "_c.get('lifetime_value')", "_c.get('currency') or _t.get('currency')")
        elif kind is Type.money:
            self._money_field(var, f"{g}.get({key!r})", f"{g}.get('currency')")
        elif path == "transaction.age":
            p.append(f"{var} = _age(facts.get('now'), _t.get('failed_at'))")
        elif path in ("transaction.failed_time", "transaction.failed_weekday"):
            p.append("_loc = _local(_t.get('failed_at'), _c.get('timezone'))")
            p.append(f"{var} = None if _loc is None else _loc[{0 if path.endswith('time') else 1}]")
        elif kind is Type.number:
            p.append(f"{var} = {g}.get({key!r})")
            p.append(f"if {var}.__class__ is not int: {var} = _number({var})")
        elif kind is Type.percent:
            p.append(f"{var} = _number({g}.get({key!r}))")
        elif kind is Type.duration:
            p.append(f"{var} = _duration_fact({g}.get({key!r}))")
        elif kind is Type.time:
            p.append(f"{var} = _time_fact({g}.get({key!r}))")
        elif kind is Type.list:
            p.append(f"{var} = {g}.get({key!r})")
            p.append(f"if {var}.__class__ is not list: {var} = None")
        elif kind is Type.yes_no:
            p.append(f"{var} = {g}.get({key!r})")
            p.append(f"if {var}.__class__ is not bool: {var} = None")
        else:  # text
            p.append(f"{var} = {g}.get({key!r})")
            p.append(f"if {var}.__class__ is not str: {var} = None")
        return var

    def _money_field(self, var: str, amount: str, currency: str) -> None:
        """Two locals: ``var``, the Decimal amount (None if missing or not a number); ``var_c``, currency."""
        self.prologue += [
            f"_a = {amount}",
            f"{var}_c = {currency}",
            "if _a.__class__ is str:",
            "    try:",
            f"        {var} = _D(_a)",
            "    except _Invalid:",
            f"        {var} = None",
            "    else:",
            f"        if not {var}.is_finite(): {var} = None",
            "else:",
            f"    {var} = _money_amount(_a)",
            f"if {var}_c.__class__ is not str: {var} = None",
        ]

    def value(self, operand: n.Operand) -> tuple[str, bool]:
        """Python expression for the operand's run-time value, and whether it may be None."""
        if isinstance(operand, n.FieldRef):
            var = self.field(operand.path)
            if FIELDS[operand.path].type is Type.money:  # as an (amount, currency) pair for the general path
                return f"(None if {var} is None else ({var}, {var}_c))", True
            return var, True
        return self.const(_literal_value(operand)), False

    def expr(self, expr: n.Expr) -> str:
        if isinstance(expr, n.Or):
            return "(" + " or ".join(self.expr(i) for i in expr.items) + ")"
        if isinstance(expr, n.And):
            return "(" + " and ".join(self.expr(i) for i in expr.items) + ")"
        if isinstance(expr, n.Not):
            return f"(not {self.expr(expr.expr)})"
        if isinstance(expr, n.Truthy):
            value, _ = self.value(expr.operand)
            return f"({value} is True)"
        if isinstance(expr, n.Compare):
            return self.compare(expr.left, expr.op, expr.right)
        if isinstance(expr, n.InList):
            return self.in_list(expr)
        if isinstance(expr, n.Has):
            left, _ = self.value(expr.left)
            item, item_nullable = self.value(expr.item)
            guard = f" and {item} is not None" if item_nullable else ""
            return f"({left} is not None{guard} and {item} in {left})"
        low = self.compare(expr.value, ">=", expr.low)
        high = self.compare(expr.value, "<=", expr.high)
        return f"({low} and {high})"

    def compare(self, left_node: n.Operand, op: str, right_node: n.Operand) -> str:
        kind = _operand_type(left_node)
        if kind is Type.money and isinstance(left_node, n.FieldRef) and isinstance(right_node, n.MoneyLit):
            var = self.field(left_node.path)
            amount, currency = self.const(right_node.amount), right_node.currency
            return (
                f"({var} is not None and ({var} {op} {amount} if {var}_c == {currency!r} "
                f"else _money_cmp2(_rates, {var}, {var}_c, {op!r}, {amount}, {currency!r})))"
            )
        left, left_nullable = self.value(left_node)
        right, right_nullable = self.value(right_node)
        if kind is Type.money:
            return f"_money_cmp(_rates, {left}, {op!r}, {right})"
        if kind is Type.yes_no and op in ("==", "!=") and not right_nullable:
            return f"({left} is {right})" if op == "==" else f"({left} is (not {right}))"
        guards = [
            f"{v} is not None" for v, nullable in ((left, left_nullable), (right, right_nullable)) if nullable
        ]
        return "(" + " and ".join([*guards, f"{left} {op} {right}"]) + ")"

    def in_list(self, expr: n.InList) -> str:
        left, nullable = self.value(expr.left)
        kind = _operand_type(expr.left)
        if kind is Type.money or any(isinstance(i, n.FieldRef) for i in expr.items):
            parts = " or ".join(self.compare(expr.left, "==", item) for item in expr.items)
            inside = f"({parts})"
        else:
            values = frozenset(_literal_value(i) for i in expr.items)
            inside = f"({left} in {self.const(values)})"
        if expr.negated:
            return f"({left} is not None and not {inside})" if nullable else f"(not {inside})"
        return inside


class _DecideGenerator(_Generator):
    """The translation ``decide`` runs: money compared to a constant through a float filter (exact: the Decimal
    decides whenever the float cannot), and no guard where the comparison is false on None anyway."""

    def __init__(self) -> None:
        super().__init__(prefix="_f")
        self.float_currency: dict[str, str] = {}  # money field var -> the currency its float filter holds for

    def _money_field(self, var: str, amount: str, currency: str) -> None:
        """Two locals, read as they are: ``var_r``, the amount; ``var_c``, the currency."""
        self.prologue += [f"{var}_r = {amount}", f"{var}_c = {currency}"]

    def _float_filter(self, var: str, currency: str) -> str | None:
        """``var_f``: the amount as a float when it is a finite decimal text in ``currency``, else NaN (which
        fails every float test and so sends the comparison to the Decimal). One currency per field."""
        held = self.float_currency.get(var)
        if held is None:
            self.float_currency[var] = held = currency
            self.prologue += [
                f"{var}_f = _nan",
                f"if {var}_r.__class__ is str and {var}_c.__class__ is str and {var}_c == {currency!r}"
                f" and {var}_r.isascii():",
                "    try:",
                f"        {var}_f = _float({var}_r)",
                "    except ValueError:",
                "        pass",
                "    else:",
                f"        if {var}_f - {var}_f: {var}_f = _nan",  # inf (from "inf" or 1e999): not settled here
            ]
        return f"{var}_f" if held == currency else None

    def value(self, operand: n.Operand) -> tuple[str, bool]:
        if isinstance(operand, n.FieldRef) and FIELDS[operand.path].type is Type.money:
            var = self.field(operand.path)
            return f"_money_pair({var}_r, {var}_c)", True
        return super().value(operand)

    def compare(self, left_node: n.Operand, op: str, right_node: n.Operand) -> str:
        kind = _operand_type(left_node)
        if kind is Type.money and isinstance(left_node, n.FieldRef) and isinstance(right_node, n.MoneyLit):
            var = self.field(left_node.path)
            amount, currency = self.const(right_node.amount), right_node.currency
            exact = f"_money_exact(_rates, {var}_r, {var}_c, {op!r}, {amount}, {currency!r})"
            f = self._float_filter(var, currency)
            if f is None:
                return exact
            low, high = (self.const(b) for b in _float_bounds(right_node.amount))
            if op in (">", ">="):
                return f"({f} > {high} or (not {f} < {low} and {exact}))"
            if op in ("<", "<="):
                return f"({f} < {low} or (not {f} > {high} and {exact}))"
            if op == "==":
                return f"(not ({f} < {low} or {f} > {high}) and {exact})"
            return f"({f} < {low} or {f} > {high} or {exact})"
        if (
            op == "=="
            and kind is not Type.money
            and kind is not Type.yes_no
            and isinstance(left_node, n.FieldRef)
            and not isinstance(right_node, n.FieldRef)
        ):
            left, _ = self.value(left_node)  # None == a constant is false: the None guard adds nothing
            return f"({left} == {self.const(_literal_value(right_node))})"
        return super().compare(left_node, op, right_node)


def _operand_type(operand: n.Operand) -> Type:
    if isinstance(operand, n.FieldRef):
        return FIELDS[operand.path].type
    if isinstance(operand, n.MoneyLit):
        return Type.money
    if isinstance(operand, n.StringLit):
        return Type.text
    if isinstance(operand, n.BoolLit):
        return Type.yes_no
    return Type.number  # durations, times, weekdays and percentages compare as numbers


def _literal_value(operand: n.Operand) -> object:
    if isinstance(operand, n.MoneyLit):
        return (operand.amount, operand.currency)
    if isinstance(operand, n.NumberLit):
        value = operand.value
        return int(value) if value == value.to_integral_value() else value
    if isinstance(operand, n.StringLit):
        return operand.value
    if isinstance(operand, n.DurationLit):
        return operand.value.seconds
    if isinstance(operand, n.PercentLit):
        return operand.value / 100  # facts carry likelihoods as fractions between 0 and 1
    if isinstance(operand, n.TimeLit):
        return operand.hour * 60 + operand.minute
    if isinstance(operand, n.DayLit):
        return n.WEEKDAYS.index(operand.day)
    if isinstance(operand, n.BoolLit):
        return operand.value
    raise TypeError(operand)  # pragma: no cover


def _atoms(expr: n.Expr) -> list[n.Expr]:
    if isinstance(expr, n.And | n.Or):
        return [atom for item in expr.items for atom in _atoms(item)]
    if isinstance(expr, n.Not):
        return _atoms(expr.expr)
    return [expr]


def _time_of(lit: n.TimeLit) -> time:
    return time(0, 0) if lit.hour == 24 else time(lit.hour, lit.minute)


def _build_timing(policy: n.Policy) -> PolicyTiming:
    business: list[BusinessHoursRule] = []
    quiet: list[QuietHoursRule] = []
    skip_holidays = skip_weekends = False
    cadence: CadenceRule | None = None
    overrides: list[OverrideRule] = []
    skip_lines: list[tuple[str, int]] = []
    for s in policy.statements:
        if isinstance(s, n.BusinessHours):
            windows = tuple(HoursWindow(e.days(), _time_of(e.start), _time_of(e.end)) for e in s.entries)
            business.append(BusinessHoursRule(tuple(r.text for r in s.regions), windows, s.line))
        elif isinstance(s, n.QuietHours):
            quiet.append(
                QuietHoursRule(tuple(r.text for r in s.regions), _time_of(s.start), _time_of(s.end), s.line)
            )
        elif isinstance(s, n.Skip):
            names = {i.text for i in s.items}
            skip_holidays |= "holidays" in names
            skip_weekends |= "weekends" in names
            skip_lines += [(name, s.line) for name in sorted(names)]
        elif isinstance(s, n.Cadence):
            caps = {i.period: int(i.count) for i in s.items if isinstance(i, n.CadenceMax)}
            gap = next((i.gap.seconds for i in s.items if isinstance(i, n.CadenceGap)), None)
            cadence = CadenceRule(caps.get("hour"), caps.get("day"), caps.get("week"), gap, s.line)
        elif isinstance(s, n.Override):
            overrides.append(OverrideRule(frozenset(i.text for i in s.ignores), s.line))
    return PolicyTiming(
        tuple(business), tuple(quiet), skip_holidays, skip_weekends, cadence, tuple(overrides), tuple(skip_lines)
    )


def _compile_plan(plan: n.Plan) -> CompiledPlan:
    steps: list[CompiledStep] = []
    priority = Priority.DEFAULT
    escalate_after = escalate_to = give_up = None
    for item in plan.items:
        if isinstance(item, n.Priority):
            priority = Priority(item.level.text)
        elif isinstance(item, n.Escalate):
            escalate_after, escalate_to = item.after.iso(), item.team.text
        elif isinstance(item, n.GiveUp):
            give_up = item.after.iso()
        else:
            condition = format_expr(item.condition) if item.condition is not None else None
            if isinstance(item, n.MessageStep):
                steps.append(
                    CompiledStep(
                        len(steps),
                        item.line,
                        StepAction.MESSAGE,
                        item.after.seconds,
                        str(item.after),
                        tuple(Channel(c.text) for c in item.channels),
                        item.template.text,
                        tuple((v.name, v.weight) for v in item.variants),
                        condition,
                    )
                )
            else:
                steps.append(
                    CompiledStep(
                        len(steps),
                        item.line,
                        StepAction.RETRY_PAYMENT,
                        item.after.seconds,
                        str(item.after),
                        (),
                        None,
                        (),
                        condition,
                    )
                )
    segments = tuple(s.text for s in plan.segments)
    return CompiledPlan(plan.line, segments, priority, tuple(steps), escalate_after, escalate_to, give_up)


_TABLE_SIZE = 4096  # Decisions built up front per policy; a policy that could make more builds them as met


class _DecisionSpace:
    """Every Decision a policy can make, numbered, so that ``decide`` finds its own with a few additions:
    ((segment * (offer rules + 1) + offer rule) * 2**step_bits + conditional steps held) * 2**overrides
    + overrides held. Decisions are immutable: each is built once per policy and shared by every case."""

    def __init__(
        self,
        segments: tuple[str, ...],
        segment_plan: tuple[int, ...],
        fallback: int,
        plans: tuple[CompiledPlan, ...],
        offers: tuple[tuple[CompiledOffer, ...], ...],
        override_ignores: tuple[frozenset[str], ...],
    ) -> None:
        self.segments, self.segment_plan, self.fallback = segments, segment_plan, fallback
        self.plans, self.offers, self.override_ignores = plans, offers, override_ignores
        #: per plan, the positions of its steps that have a condition (bit j of the steps number: the j-th)
        self.cond_steps = tuple(
            tuple(i for i, st in enumerate(plan.steps) if st.condition is not None) for plan in plans
        )
        self.step_bits = max((len(c) for c in self.cond_steps), default=0)
        self.step_unit = 1 << len(override_ignores)
        self.offer_unit = self.step_unit << self.step_bits
        self.segment_unit = self.offer_unit * (len(offers) + 1)
        self.size = self.segment_unit * (len(segments) + 1)

    def plan_of(self, segment: int) -> int:
        return self.segment_plan[segment] if segment < len(self.segments) else self.fallback

    def decision_at(self, index: int) -> Decision:
        index, overrides_held = divmod(index, self.step_unit)
        index, steps_held = divmod(index, 1 << self.step_bits)
        segment, offer = divmod(index, len(self.offers) + 1)
        p = self.plan_of(segment)
        plan = self.plans[p] if p >= 0 else None
        steps: tuple[CompiledStep, ...] = ()
        if plan is not None:
            dropped = {i for bit, i in enumerate(self.cond_steps[p]) if not steps_held >> bit & 1}
            steps = tuple(st for i, st in enumerate(plan.steps) if i not in dropped) if dropped else plan.steps
        ignores: frozenset[str] = frozenset()
        for bit, more in enumerate(self.override_ignores):
            if overrides_held >> bit & 1:
                ignores |= more
        return Decision(
            self.segments[segment] if segment < len(self.segments) else None,
            plan,
            self.offers[offer] if offer < len(self.offers) else (),
            steps,
            ignores,
        )


def _decide_body(
    gen: _DecideGenerator,
    space: _DecisionSpace,
    segments: list[n.Segment],
    plan_nodes: list[n.Plan],
    offer_rules: list[n.OfferRule],
    overrides: list[n.Override],
) -> list[str]:
    """Statements that leave the number of the Decision in ``i`` (its reads go to ``gen.prologue``)."""
    body: list[str] = []
    for k in range(len(segments) + 1):
        if k < len(segments):
            cond = segments[k].condition
            body.append(f"{'if' if k == 0 else 'elif'} {'True' if cond is None else gen.expr(cond)}:")
        else:
            body.append("else:" if segments else "if True:")
        body.append(f"    i = {k * space.segment_unit}")
        p = space.plan_of(k)
        for bit, si in enumerate(space.cond_steps[p] if p >= 0 else ()):
            step_cond = plan_nodes[p].steps[si].condition
            assert step_cond is not None
            body.append(f"    if {gen.expr(step_cond)}: i += {space.step_unit << bit}")
    for k, rule in enumerate(offer_rules):
        add = f"i += {k * space.offer_unit}" if k else "pass"
        if rule.condition is None:  # otherwise: the rules after it never apply
            if k:
                body.append(f"else: {add}")
            break
        body.append(f"{'if' if k == 0 else 'elif'} {gen.expr(rule.condition)}: {add}")
    else:
        body.append(f"{'else: ' if offer_rules else ''}i += {len(offer_rules) * space.offer_unit}")
    for bit, override in enumerate(overrides):
        body.append(f"if {gen.expr(override.condition)}: i += {1 << bit}")
    return body


def _group_reads(field_vars: Iterable[str]) -> list[str]:
    """The fact groups the fields come from, each a dict (anything else reads as empty)."""
    used = {path.split(".")[0] for path in field_vars}
    if used & {"customer", "transaction"}:  # some customer facts read the transaction's, and back
        used |= {"customer", "transaction"}
    return [
        line
        for group, var in _GROUP_VAR.items()
        if group in used
        for line in (f"{var} = facts.get({group!r})", f"if {var}.__class__ is not dict: {var} = _E")
    ]


def build(
    policy: n.Policy,
    *,
    fx_rates: FxRates | None,
    source_hash: str,
    version: int | None,
    warnings: tuple[Diagnostic, ...] = (),
) -> CompiledPolicy:
    """Compile a validated tree. Use ``compile_policy`` for text: it validates and caches."""
    segments = [s for s in policy.statements if isinstance(s, n.Segment)]
    plan_nodes = [s for s in policy.statements if isinstance(s, n.Plan)]
    offer_rules = [r for s in policy.statements if isinstance(s, n.Offers) for r in s.rules]
    overrides = [s for s in policy.statements if isinstance(s, n.Override)]
    holdout_node = next((s for s in policy.statements if isinstance(s, n.Holdout)), None)
    holdout = holdout_node.percent.value if holdout_node is not None else Decimal(0)

    plans = [_compile_plan(p) for p in plan_nodes]
    offer_tuples = tuple(
        tuple(CompiledOffer(o.name, o.term.iso() if o.term else None) for o in r.offers) for r in offer_rules
    )
    fallback = next((i for i, p in enumerate(plan_nodes) if not p.segments), -1)
    segment_plan = []
    for segment in segments:
        # a segment without a plan of its own is served by ``plan otherwise`` (docs/policy-language.md, Plans)
        index = next(
            (i for i, p in enumerate(plan_nodes) if segment.name.text in {s.text for s in p.segments}), fallback
        )
        segment_plan.append(index)

    space = _DecisionSpace(
        tuple(s.name.text for s in segments),
        tuple(segment_plan),
        fallback,
        tuple(plans),
        offer_tuples,
        tuple(frozenset(i.text for i in o.ignores) for o in overrides),
    )
    fast = _DecideGenerator()
    body = _decide_body(fast, space, segments, plan_nodes, offer_rules, overrides)
    table = tuple(map(space.decision_at, range(space.size))) if space.size <= _TABLE_SIZE else None
    body.append("return _T[i]" if table is not None else "return _decision(i)")

    # explain: every condition, the reference way
    gen = _Generator()
    conditions: list[tuple[str, int, str]] = []
    explain: list[str] = []
    explained_by_line: list[tuple[int, int, tuple[str, int, str], str]] = []

    def explained(kind: str, line: int, cond: n.Expr) -> None:
        entries = [((kind, line, format_expr(cond)), gen.expr(cond))]
        atoms = _atoms(cond)
        if len(atoms) > 1:
            entries += [(("part", atom.line, format_expr(atom)), gen.expr(atom)) for atom in atoms]
        for entry, code in entries:
            explained_by_line.append((line, len(explained_by_line), entry, code))

    for s in segments:
        if s.condition is not None:
            explained("segment", s.line, s.condition)
    for r in offer_rules:
        if r.condition is not None:
            explained("offer", r.line, r.condition)
    for o in overrides:
        explained("override", o.line, o.condition)
    for plan_node in plan_nodes:
        for step in plan_node.steps:
            if step.condition is not None:
                explained("step", step.line, step.condition)
    for _, _, entry, code in sorted(explained_by_line, key=lambda e: (e[0], e[1])):
        conditions.append(entry)
        explain.append(f"_r.append({code})")

    indent = "    "
    source = "\n".join(
        [
            "def _decide(facts):",
            *(indent + line for line in _group_reads(fast.field_vars) + fast.prologue + body),
            "",
            "def _explain(facts):",
            *(indent + line for line in _group_reads(gen.field_vars) + gen.prologue),
            indent + "_r = []",
            *(indent + line for line in explain),
            indent + "return _r",
            "",
        ]
    )
    namespace: dict[str, Any] = {
        "_E": _EMPTY,
        "_money_cmp": _money_cmp,
        "_money_cmp2": _money_cmp2,
        "_money_amount": _money_amount,
        "_money_exact": _money_exact,
        "_money_pair": _money_pair,
        "_float": float,
        "_nan": math.nan,
        "_D": Decimal,
        "_Invalid": InvalidOperation,
        "_T": table,
        "_decision": lru_cache(maxsize=_TABLE_SIZE)(space.decision_at),
        "_number": _number,
        "_age": _age,
        "_local": _local,
        "_duration_fact": _duration_fact,
        "_time_fact": _time_fact,
        "_rates": fx_rates,
        **gen.consts,
        **fast.consts,
    }
    bytecode = compile(source, f"<policy {policy.name!r}>", "exec")
    exec(bytecode, namespace)  # noqa: S102 - the source is generated above from a validated tree, not user text

    return CompiledPolicy(
        name=policy.name,
        source_hash=source_hash,
        version=version,
        segments=tuple(s.name.text for s in segments),
        plans=tuple(plans),
        timing=_build_timing(policy),
        holdout_percent=holdout,
        holdout_keeps_retries=holdout_node is not None and holdout_node.with_retries,
        warnings=warnings,
        python_source=source,
        decide=namespace["_decide"],
        _explain=namespace["_explain"],
        _segment_plan=tuple(segment_plan),
        _fallback_plan=fallback,
        _conditions=tuple(conditions),
        experiment=_compile_experiment(
            policy, fx_rates=fx_rates, source_hash=source_hash, version=version, warnings=warnings
        ),
    )


def experiment_salt(experiment: n.Experiment) -> str:
    """A stable text of the experiment's definition: its name, arm names and weights (not what the arms write)."""
    definition = [experiment.name, [[a.name.text, _plain_number(a.weight.value)] for a in experiment.arms]]
    text = json.dumps(definition, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _plain_number(value: Decimal) -> str:
    """50, 50.0 and 50.00 the same way: ``50``."""
    text = format(value.normalize(), "f")
    return text


def _compile_experiment(
    policy: n.Policy,
    *,
    fx_rates: FxRates | None,
    source_hash: str,
    version: int | None,
    warnings: tuple[Diagnostic, ...],
) -> CompiledExperiment | None:
    experiment = experiment_of(policy)
    if experiment is None:
        return None
    arms = []
    for arm in experiment.arms:
        compiled = None
        if arm.statements:
            tree = n.Policy(
                policy.name, arm_policy(policy.statements, arm).statements, line=policy.line, col=policy.col
            )
            compiled = build(tree, fx_rates=fx_rates, source_hash=source_hash, version=version, warnings=warnings)
        arms.append(CompiledArm(arm.name.text, arm.weight.value, compiled, arm.line))
    guardrails = tuple((g.metric.text, g.percent.value / 100) for g in experiment.guardrails)
    return CompiledExperiment(experiment.name, experiment.line, tuple(arms), guardrails, experiment_salt(experiment))


# --- text -> compiled, with a per-process cache -------------------------------------------------------------

_CACHE: dict[tuple[object, ...], CompiledPolicy] = {}
_CACHE_SIZE = 128


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compile_policy(
    text: str,
    *,
    version: int | None = None,
    fx_rates: FxRates | None = None,
    known_templates: Collection[str] | None = None,
    retry_budget: int = DEFAULT_RETRY_BUDGET,
    filename: str = "<policy>",
) -> CompiledPolicy:
    """Parse, validate and compile; the result is cached per (version, source hash, rates).

    Raises PolicyError (syntax or validation) when the policy has errors; warnings ride on ``.warnings``.
    """
    digest = source_hash(text)
    templates_key = tuple(sorted(known_templates)) if known_templates is not None else None
    key = (version, digest, fx_rates, templates_key, retry_budget)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    tree = parse(text, filename=filename)
    found = validate(
        tree,
        text,
        known_templates=known_templates,
        fx_currencies=fx_rates.currencies() if fx_rates else None,
        retry_budget=retry_budget,
    )
    errors = [d for d in found if d.is_error]
    if errors:
        raise PolicyValidationError(errors + [d for d in found if not d.is_error])
    compiled = build(tree, fx_rates=fx_rates, source_hash=digest, version=version, warnings=tuple(found))
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = compiled
    return compiled


__all__ = [
    "BusinessHoursRule",
    "CadenceRule",
    "CompiledOffer",
    "CompiledPlan",
    "CompiledPolicy",
    "CompiledStep",
    "ConditionResult",
    "Decision",
    "HoursWindow",
    "OverrideRule",
    "PolicyError",
    "PolicyTiming",
    "QuietHoursRule",
    "compile_policy",
    "experiment_salt",
    "source_hash",
]
