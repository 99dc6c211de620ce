"""Checks that a grammatical policy also makes sense, and says how to fix what doesn't.

Every finding is a Diagnostic with the line and column of the word at fault. Errors make the policy unusable;
warnings (a currency with no exchange rate, a very large holdout) do not.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from decimal import Decimal
from functools import cache

from dsl import nodes as n
from dsl.arms import ARM_KINDS, allowed_in_arm, arm_policy
from dsl.errors import Diagnostic, Severity, did_you_mean, one_of
from dsl.limits import (
    MAX_CONDITION_PARTS,
    MAX_OFFER_RULES,
    MAX_OVERRIDES,
    MAX_PLANS,
    MAX_SEGMENTS,
    MAX_STEPS_PER_PLAN,
)
from dsl.schema import (
    CHANNELS,
    FIELDS,
    GROUPS,
    OFFERS,
    OFFERS_WITH_TERM,
    OVERRIDABLE,
    PRIORITIES,
    Type,
)
from rules.vocabulary import GUARDRAIL_METRICS

DEFAULT_RETRY_BUDGET = 4
"""How many `retry payment` steps one plan may hold when the caller configures nothing.

Visa allows at most 15 retries of one card in 30 days and Mastercard charges past 35 declines; a plan's own
retries share that budget with every other retry of the card, so the default keeps a plan well inside it.
"""

#: the longest experiment and arm names (what the experiment's records keep of them)
MAX_EXPERIMENT_NAME = 120
MAX_ARM_NAME = 64

REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
COMMON_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "MXN", "BRL", "INR")
ORDERED = (Type.money, Type.number, Type.duration, Type.percent, Type.time)


@cache
def _currencies() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


class _Checker:
    def __init__(
        self,
        lines: list[str],
        known_templates: Collection[str] | None,
        fx_currencies: Collection[str] | None,
        retry_budget: int,
    ) -> None:
        self.lines = lines
        self.known_templates = known_templates
        self.fx_currencies = fx_currencies
        self.retry_budget = retry_budget
        self.found: list[Diagnostic] = []

    def error(self, node: n.Node | tuple[int, int], message: str) -> None:
        self._add(node, message, Severity.error)

    def warning(self, node: n.Node | tuple[int, int], message: str) -> None:
        self._add(node, message, Severity.warning)

    def _add(self, node: n.Node | tuple[int, int], message: str, severity: Severity) -> None:
        line, col = (node.line, node.col) if isinstance(node, n.Node) else node
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        self.found.append(Diagnostic(line, col, message, severity, source))

    # --- the policy as a whole ----------------------------------------------------------------------------

    def policy(self, policy: n.Policy) -> None:
        if not self.within_limits(policy):
            return  # a policy past the size limits is not checked further: it could not be compiled anyway
        if not policy.name.strip():
            self.error(policy, 'give the policy a name, like: policy "standard"')
        segments = [s for s in policy.statements if isinstance(s, n.Segment)]
        plans = [s for s in policy.statements if isinstance(s, n.Plan)]
        self.segments(segments)
        self.plans(plans, segments)
        seen: dict[str, n.Node] = {}
        for statement in policy.statements:
            if isinstance(statement, n.BusinessHours):
                self.business_hours(statement, seen)
            elif isinstance(statement, n.QuietHours):
                self.quiet_hours(statement, seen)
            elif isinstance(statement, n.Skip):
                self.skip(statement)
            elif isinstance(statement, n.Cadence):
                self.once(statement, "cadence", seen)
                self.cadence(statement)
            elif isinstance(statement, n.Override):
                self.condition(statement.condition)
                self.override(statement)
            elif isinstance(statement, n.Holdout):
                self.once(statement, "holdout", seen)
                self.holdout(statement, plans)
            elif isinstance(statement, n.Offers):
                self.once(statement, "offers", seen)
                self.offers(statement)
        if not segments and not plans:
            self.error(policy, "the policy has no segments and no plans, so it would never contact anyone")
        experiments = [s for s in policy.statements if isinstance(s, n.Experiment)]
        for k, experiment in enumerate(experiments):
            if k:
                self.error(
                    experiment,
                    f'a policy runs one experiment at a time: "{experiments[0].name}" is on line '
                    f"{experiments[0].line}; end it (promote an arm) before starting another "
                    "(the holdout is separate)",
                )
            self.experiment(policy, experiment)

    def within_limits(self, policy: n.Policy) -> bool:
        """Whether the policy is small enough to compile; an error at the first thing past each limit if not."""
        counted: dict[str, list[n.Node]] = {"segments": [], "plans": [], "offer rules": [], "overrides": []}
        conditions: list[n.Expr] = []
        for statement in policy.statements:
            if isinstance(statement, n.Segment):
                counted["segments"].append(statement)
                conditions += [statement.condition] if statement.condition is not None else []
            elif isinstance(statement, n.Plan):
                counted["plans"].append(statement)
                steps = statement.steps
                if len(steps) > MAX_STEPS_PER_PLAN:
                    self.error(
                        steps[MAX_STEPS_PER_PLAN],
                        f"this plan has {len(steps)} steps: a plan may have at most {MAX_STEPS_PER_PLAN}",
                    )
                conditions += [s.condition for s in steps if s.condition is not None]
            elif isinstance(statement, n.Offers):
                counted["offer rules"] += statement.rules
                conditions += [r.condition for r in statement.rules if r.condition is not None]
            elif isinstance(statement, n.Override):
                counted["overrides"].append(statement)
                conditions.append(statement.condition)
        limits = {
            "segments": MAX_SEGMENTS,
            "plans": MAX_PLANS,
            "offer rules": MAX_OFFER_RULES,
            "overrides": MAX_OVERRIDES,
        }
        for what, nodes in counted.items():
            if len(nodes) > limits[what]:
                self.error(
                    nodes[limits[what]], f"the policy has {len(nodes)} {what}: it may have at most {limits[what]}"
                )
        for condition in conditions:
            parts = _count_parts(condition)
            if parts > MAX_CONDITION_PARTS:
                self.error(
                    condition,
                    f"this condition has {parts} parts: a condition may join at most {MAX_CONDITION_PARTS} "
                    "with and / or",
                )
        return not self.found

    def once(self, node: n.Node, what: str, seen: dict[str, n.Node]) -> None:
        if what in seen:
            self.error(node, f"{what} is already set on line {seen[what].line}; keep one")
        else:
            seen[what] = node

    # --- experiments ---------------------------------------------------------------------------------------

    def experiment(self, policy: n.Policy, experiment: n.Experiment) -> None:
        if not experiment.name.strip():
            self.error(experiment, 'give the experiment a name, like: experiment "whatsapp first"')
        elif len(experiment.name) > MAX_EXPERIMENT_NAME:
            self.error(experiment, f"an experiment's name may have at most {MAX_EXPERIMENT_NAME} characters")
        if len(experiment.arms) < 2:
            self.error(
                experiment,
                "an experiment needs at least two arms: the first is the control, the others are compared "
                "with it (like: arm control 50%)",
            )
        names: dict[str, n.Arm] = {}
        for arm in experiment.arms:
            name = arm.name.text
            if name in names:
                self.error(arm.name, f'arm "{name}" is already defined on line {names[name].line}')
            names.setdefault(name, arm)
            if len(name) > MAX_ARM_NAME:
                self.error(arm.name, f"an arm's name may have at most {MAX_ARM_NAME} characters")
            if arm.weight.value <= 0:
                self.error(arm.weight, f'arm "{name}" needs a share above 0%')
        total = sum((a.weight.value for a in experiment.arms), Decimal(0))
        if experiment.arms and total != 100:
            self.error(experiment.arms[0].weight, f"arm shares add up to {_num(total)}%, not 100%")
        self.guardrails(experiment.guardrails)
        for arm in experiment.arms:
            if arm.statements:
                self.arm(policy, arm)

    def guardrails(self, guardrails: Iterable[n.Guardrail]) -> None:
        seen: dict[str, n.Guardrail] = {}
        for guardrail in guardrails:
            metric = guardrail.metric.text
            if metric not in GUARDRAIL_METRICS:
                known = one_of(list(GUARDRAIL_METRICS), "and")
                self.error(
                    guardrail.metric,
                    f'unknown guardrail metric "{metric}" (the metrics are {known})'
                    f"{did_you_mean(metric, GUARDRAIL_METRICS)}",
                )
            elif metric in seen:
                self.error(guardrail.metric, f"guardrail {metric} is already set on line {seen[metric].line}")
            seen.setdefault(metric, guardrail)
            if guardrail.percent.value >= 100:
                self.error(
                    guardrail.percent,
                    f"a guardrail accepts a rise of its rate under 100 points, not {_num(guardrail.percent.value)}%",
                )

    def arm(self, policy: n.Policy, arm: n.Arm) -> None:
        """The arm's statements, then its policy (the base with them in place) through every check a policy
        gets. What that finds in the base alone is already reported; what is new points at the arm's lines."""
        for statement in arm.statements:
            if isinstance(statement, n.Segment):
                self.error(statement, f"segments belong to the base policy, not to an arm: {_ARM_MAY}")
            elif isinstance(statement, n.Holdout):
                self.error(
                    statement,
                    "the holdout belongs to the base policy, not to an arm: it is drawn before the experiment "
                    "and its cases get no messages",
                )
            elif isinstance(statement, n.Experiment):
                self.error(statement, "an arm cannot hold an experiment: a policy runs one experiment at a time")
            elif not allowed_in_arm(statement):  # pragma: no cover - every statement kind is named above
                self.error(statement, f"an arm cannot change this: {_ARM_MAY}")
        checker = _Checker(self.lines, self.known_templates, self.fx_currencies, self.retry_budget)
        checker.policy(
            n.Policy(policy.name, arm_policy(policy.statements, arm).statements, line=policy.line, col=policy.col)
        )
        known = set(self.found)
        for diagnostic in checker.found:
            if diagnostic not in known:
                self.found.append(diagnostic)
                known.add(diagnostic)

    # --- segments and plans ---------------------------------------------------------------------------------

    def segments(self, segments: list[n.Segment]) -> None:
        names: dict[str, n.Segment] = {}
        catch_all: n.Segment | None = None
        for segment in segments:
            name = segment.name.text
            if name in names:
                self.error(segment.name, f'segment "{name}" is already defined on line {names[name].line}')
            names.setdefault(name, segment)
            if catch_all is not None:
                self.error(
                    segment.name,
                    f'segment "{name}" can never match: segment "{catch_all.name.text}" on line '
                    f"{catch_all.line} above it takes every case",
                )
            if segment.condition is not None:
                self.condition(segment.condition)
            if _always_true(segment.condition) and catch_all is None:
                catch_all = segment

    def plans(self, plans: list[n.Plan], segments: list[n.Segment]) -> None:
        segment_names = [s.name.text for s in segments]
        planned: dict[str, n.Plan] = {}
        fallback: n.Plan | None = None
        for plan in plans:
            if not plan.segments:
                if fallback is not None:
                    self.error(plan, f"there is already a plan otherwise on line {fallback.line}; keep one")
                fallback = fallback or plan
            for name in plan.segments:
                if name.text not in segment_names:
                    self.error(name, f'unknown segment "{name.text}"{did_you_mean(name.text, segment_names)}')
                elif name.text in planned:
                    self.error(
                        name, f'segment "{name.text}" already has a plan on line {planned[name.text].line}'
                    )
                else:
                    planned[name.text] = plan
            self.plan(plan)
        if fallback is None:
            for segment in segments:
                if segment.name.text not in planned:
                    self.error(
                        segment.name,
                        f'segment "{segment.name.text}" has no plan: add "plan for {segment.name.text}" '
                        f'or a "plan otherwise" for every segment without one',
                    )

    def plan(self, plan: n.Plan) -> None:
        once: dict[str, n.Node] = {}
        steps: list[n.Step] = []
        give_up: n.GiveUp | None = None
        escalate: n.Escalate | None = None
        retries = 0
        for item in plan.items:
            if isinstance(item, n.Priority):
                self.once(item, "the priority of this plan", once)
                if item.level.text not in PRIORITIES:
                    hint = did_you_mean(item.level.text, PRIORITIES) or f": use {one_of(list(PRIORITIES))}"
                    self.error(item.level, f'unknown priority "{item.level.text}"{hint}')
            elif isinstance(item, n.GiveUp):
                self.once(item, "give up for this plan", once)
                give_up = give_up or item
            elif isinstance(item, n.Escalate):
                self.once(item, "escalate for this plan", once)
                escalate = escalate or item
                if not item.team.text.strip():
                    self.error(item.team, "name the team to escalate to")
            else:
                if steps and item.after.seconds < steps[-1].after.seconds:
                    self.error(
                        item,
                        f"this step (after {item.after}) comes before the step on line {steps[-1].line} "
                        f"(after {steps[-1].after}): write steps in the order they happen",
                    )
                if give_up is not None:
                    self.error(
                        item, f"this step comes after give up (line {give_up.line}): move give up last"
                    )
                steps.append(item)
                if item.condition is not None:
                    self.condition(item.condition)
                if isinstance(item, n.MessageStep):
                    self.message_step(item)
                else:
                    retries += 1
                    if retries > self.retry_budget:
                        self.error(
                            item,
                            f"this plan has more retry payment steps than the card-network retry budget "
                            f"allows ({self.retry_budget})",
                        )
        if not steps:
            self.warning(plan, "this plan has no steps, so it would never contact anyone")
        if give_up is not None and steps:
            last = max(steps, key=lambda s: s.after.seconds)
            if give_up.after.seconds < last.after.seconds:
                self.error(
                    give_up,
                    f"give up after {give_up.after} comes before the step on line {last.line} "
                    f"(after {last.after}), which would never happen",
                )
        if give_up is not None and escalate is not None and escalate.after.seconds > give_up.after.seconds:
            self.warning(
                escalate,
                f"escalate after {escalate.after} comes after give up ({give_up.after}) and never happens",
            )

    def message_step(self, step: n.MessageStep) -> None:
        seen: set[str] = set()
        for channel in step.channels:
            if channel.text not in CHANNELS:
                hint = did_you_mean(channel.text, CHANNELS) or f": use {one_of(list(CHANNELS))}"
                self.error(channel, f'unknown channel "{channel.text}"{hint}')
            elif channel.text in seen:
                self.error(channel, f'channel "{channel.text}" is listed twice in this step')
            seen.add(channel.text)
        template = step.template.text
        if not template.strip():
            self.error(step.template, "name the template to send")
        elif self.known_templates is not None and template not in self.known_templates:
            self.error(
                step.template, f'unknown template "{template}"{did_you_mean(template, self.known_templates)}'
            )
        if step.variants:
            names: set[str] = set()
            for variant in step.variants:
                if variant.name in names:
                    self.error(variant, f'variant "{variant.name}" is listed twice')
                names.add(variant.name)
                if variant.weight <= 0:
                    self.error(variant, f'variant "{variant.name}" needs a share above 0%')
            total = sum((v.weight for v in step.variants), Decimal(0))
            if total != 100:
                self.error(step.variants[0], f"variant shares add up to {_num(total)}%, not 100%")

    # --- timing ---------------------------------------------------------------------------------------------

    def regions(self, regions: Iterable[n.Text]) -> None:
        for region in regions:
            if not REGION.match(region.text):
                self.error(
                    region,
                    f'"{region.text}" is not a region: write a country like "US" or a state like "US-FL"',
                )

    def business_hours(self, hours: n.BusinessHours, seen: dict[str, n.Node]) -> None:
        self.regions(hours.regions)
        key = "business hours" + (
            " in " + ", ".join(sorted(r.text for r in hours.regions)) if hours.regions else ""
        )
        self.once(hours, key, seen)
        days: dict[int, n.HoursEntry] = {}
        for entry in hours.entries:
            if (entry.end.hour, entry.end.minute) <= (entry.start.hour, entry.start.minute):
                self.error(
                    entry.end,
                    f"business hours must end after they start ({entry.start} is not before {entry.end})",
                )
            for day in entry.days():
                if day in days:
                    self.error(entry, f"{n.WEEKDAYS[day]} already has business hours in this line")
                    break
                days[day] = entry

    def quiet_hours(self, quiet: n.QuietHours, seen: dict[str, n.Node]) -> None:
        self.regions(quiet.regions)
        key = "quiet hours" + (
            " in " + ", ".join(sorted(r.text for r in quiet.regions)) if quiet.regions else ""
        )
        self.once(quiet, key, seen)
        if (quiet.start.hour, quiet.start.minute) == (quiet.end.hour, quiet.end.minute):
            self.error(quiet.end, "quiet hours must start and end at different times")

    def skip(self, skip: n.Skip) -> None:
        seen: set[str] = set()
        for item in skip.items:
            if item.text in seen:
                self.warning(item, f"{item.text} is listed twice")
            seen.add(item.text)

    def cadence(self, cadence: n.Cadence) -> None:
        periods: dict[str, n.CadenceMax] = {}
        for item in cadence.items:
            if isinstance(item, n.CadenceMax):
                if item.count != item.count.to_integral_value() or item.count < 1:
                    self.error(item, f"a cadence cap counts whole messages: {_num(item.count)} is not one")
                if item.period in periods:
                    self.error(item, f"the cap per {item.period} is given twice")
                periods[item.period] = item
            elif item.gap.seconds == 0:
                self.error(item, "a minimum gap of zero has no effect; remove it")
        order = ["hour", "day", "week"]
        caps = sorted(periods.values(), key=lambda c: order.index(c.period))
        for shorter, longer in zip(caps, caps[1:], strict=False):
            if shorter.count > longer.count:
                self.warning(
                    shorter,
                    f"max {_num(shorter.count)} per {shorter.period} can never be reached with max "
                    f"{_num(longer.count)} per {longer.period}",
                )

    def override(self, override: n.Override) -> None:
        seen: set[str] = set()
        for item in override.ignores:
            words = item.text.replace("_", " ")
            if item.text == "quiet_hours":
                self.error(item, "quiet hours can never be overridden: no message may go out in them")
            elif item.text not in OVERRIDABLE:
                self.error(
                    item, f"{words} cannot be overridden: an override may ignore business hours and weekends"
                )
            elif item.text in seen:
                self.warning(item, f"{words} is listed twice")
            seen.add(item.text)

    def holdout(self, holdout: n.Holdout, plans: list[n.Plan]) -> None:
        share = holdout.percent.value
        if share > 100:
            self.error(holdout.percent, f"a holdout of {_num(share)}% is more than everyone")
        elif share > 50:
            self.warning(holdout.percent, f"a holdout of {_num(share)}% leaves most cases uncontacted")
        if holdout.with_retries and not any(isinstance(s, n.RetryStep) for p in plans for s in p.steps):
            # held-out cases are planned with the policy itself, never an arm: only its own plans count
            self.warning(
                holdout,
                "no plan has a retry payment step, so \"with retries\" keeps nothing: the holdout gets no "
                "messages and no card retries either way",
            )

    # --- offers -------------------------------------------------------------------------------------------

    def offers(self, offers: n.Offers) -> None:
        otherwise: n.OfferRule | None = None
        for rule in offers.rules:
            if otherwise is not None:
                self.error(
                    rule, f"this rule can never apply: otherwise on line {otherwise.line} takes every case"
                )
            if rule.condition is None:
                otherwise = otherwise or rule
            else:
                self.condition(rule.condition)
            seen: set[str] = set()
            for offer in rule.offers:
                if offer.name not in OFFERS:
                    hint = did_you_mean(offer.name, OFFERS) or f": use {one_of(list(OFFERS))}"
                    self.error(offer, f'unknown offer "{offer.name}"{hint}')
                elif offer.term is not None and offer.name not in OFFERS_WITH_TERM:
                    self.error(offer, f"{offer.name} takes no duration")
                if offer.name in seen:
                    self.error(offer, f'offer "{offer.name}" is listed twice')
                seen.add(offer.name)

    # --- conditions -----------------------------------------------------------------------------------------

    def condition(self, expr: n.Expr) -> None:
        if isinstance(expr, n.And | n.Or):
            for item in expr.items:
                self.condition(item)
        elif isinstance(expr, n.Not):
            self.condition(expr.expr)
        elif isinstance(expr, n.Truthy):
            kind = self.operand(expr.operand)
            if kind is not None and kind is not Type.yes_no:
                what = _describe(expr.operand)
                example = _example_for(expr.operand, kind)
                self.error(expr.operand, f"{what} is {kind.described}, not a yes/no fact: {example}")
        elif isinstance(expr, n.Compare):
            self.compare(expr)
        elif isinstance(expr, n.InList):
            left = self.operand(expr.left)
            if left is Type.list:
                self.error(
                    expr.left,
                    f'{_describe(expr.left)} is a list: use has, like {_describe(expr.left)} has "x"',
                )
                return
            for entry in expr.items:
                self.same_type(expr.left, left, entry, self.operand(entry))
        elif isinstance(expr, n.Has):
            left = self.operand(expr.left)
            item_type = self.operand(expr.item)
            if left is not None and left is not Type.list:
                self.error(
                    expr.left, f"{_describe(expr.left)} is {left.described}, not a list: has works on lists"
                )
            elif left is Type.list and item_type is not None and item_type is not Type.text:
                self.error(
                    expr.item, f'a list holds texts: write the value in quotes, like "{_plain(expr.item)}"'
                )
            elif left is Type.list:
                self.known_value(expr.left, expr.item)
        elif isinstance(expr, n.Between):
            kind = self.operand(expr.value)
            if kind is not None and kind not in ORDERED:
                self.error(
                    expr.value,
                    f"{_describe(expr.value)} is {kind.described}: between needs something to order",
                )
                return
            self.same_type(expr.value, kind, expr.low, self.operand(expr.low))
            self.same_type(expr.value, kind, expr.high, self.operand(expr.high))
            low, high = _ordering_key(expr.low), _ordering_key(expr.high)
            if low is not None and high is not None and low > high:
                self.error(
                    expr.low,
                    f"between {_plain(expr.low)} and {_plain(expr.high)} is empty: put the lower bound first",
                )

    def compare(self, expr: n.Compare) -> None:
        left = self.operand(expr.left)
        right = self.operand(expr.right)
        if left is None or right is None:
            return
        if not self.same_type(expr.left, left, expr.right, right):
            return
        if expr.op not in ("==", "!=") and left not in ORDERED:
            self.error(
                expr, f"{_describe(expr.left)} is {left.described}: compare it with == or !=, not {expr.op}"
            )

    def same_type(self, a: n.Operand, a_type: Type | None, b: n.Operand, b_type: Type | None) -> bool:
        if a_type is None or b_type is None:
            return False
        if a_type is Type.list:
            self.error(a, f'{_describe(a)} is a list: use has, like {_describe(a)} has "x"')
            return False
        if a_type is Type.money and b_type is Type.number and isinstance(b, n.NumberLit):
            amount = format(b.value, "f")
            self.error(
                b,
                f"{_describe(a)} is an amount of money: write {amount} with its currency, like {amount} USD",
            )
            return False
        if a_type != b_type:
            at = a if isinstance(b, n.FieldRef) and not isinstance(a, n.FieldRef) else b
            self.error(at, f"{_describe(a)} is {a_type.described}, but {_describe(b)} is {b_type.described}")
            return False
        if isinstance(a, n.FieldRef):
            self.known_value(a, b)
        elif isinstance(b, n.FieldRef):
            self.known_value(b, a)
        return True

    def known_value(self, field: n.Operand, value: n.Operand) -> None:
        if not isinstance(field, n.FieldRef) or not isinstance(value, n.StringLit):
            return
        spec = FIELDS.get(field.path)
        if spec and spec.values and value.value not in spec.values:
            what = field.path.split(".")[-1].replace("_", " ")
            if field.path == "decline.reason":
                what = "decline reason"
            elif field.path == "decline.kind":
                what = "decline kind"
            elif field.path == "customer.opted_out":
                what = "channel"
            quoted = [f'"{v}"' for v in spec.values]
            hint = did_you_mean(value.value, spec.values) or f": use {one_of(quoted)}"
            self.error(value, f'unknown {what} "{value.value}"{hint}')

    def operand(self, operand: n.Operand) -> Type | None:
        """The operand's type, or None after reporting that it is unknown or impossible."""
        if isinstance(operand, n.FieldRef):
            spec = FIELDS.get(operand.path)
            if spec is not None:
                return spec.type
            group = operand.path.split(".")[0]
            if group not in GROUPS:
                groups = one_of([f"{g}." for g in GROUPS])
                hint = did_you_mean(operand.path, FIELDS)
                self.error(operand, f'unknown fact "{operand.path}"{hint or f": facts start with {groups}"}')
            else:
                hint = did_you_mean(operand.path, [p for p in FIELDS if p.startswith(group + ".")])
                self.error(operand, f'unknown fact "{operand.path}"{hint}')
            return None
        if isinstance(operand, n.MoneyLit):
            self.currency(operand)
            return Type.money
        if isinstance(operand, n.NumberLit):
            return Type.number
        if isinstance(operand, n.StringLit):
            return Type.text
        if isinstance(operand, n.DurationLit):
            return Type.duration
        if isinstance(operand, n.PercentLit):
            if operand.value > 100:
                self.error(operand, f"{_num(operand.value)}% is more than 100%")
            return Type.percent
        if isinstance(operand, n.TimeLit):
            return Type.time
        if isinstance(operand, n.DayLit):
            return Type.weekday
        return Type.yes_no

    def currency(self, money: n.MoneyLit) -> None:
        code = money.currency
        if code not in _currencies():
            hint = did_you_mean(code, COMMON_CURRENCIES) or did_you_mean(code, _currencies())
            self.error(money, f'"{code}" is not a currency code{hint}')
        elif self.fx_currencies is not None and code not in self.fx_currencies:
            self.warning(
                money,
                f"there is no exchange rate for {code}: "
                "amounts in other currencies will not match this condition",
            )


_ARM_MAY = "an arm may write " + one_of(list(dict.fromkeys(ARM_KINDS.values())), "and")


# --- helpers ------------------------------------------------------------------------------------------------


def _count_parts(expr: n.Expr) -> int:
    """The comparisons in a condition (counted without recursion)."""
    count = 0
    stack: list[n.Expr] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, n.And | n.Or):
            stack.extend(item.items)
        elif isinstance(item, n.Not):
            stack.append(item.expr)
        else:
            count += 1
    return count


def _always_true(expr: n.Expr | None) -> bool:
    if expr is None:
        return True
    return isinstance(expr, n.Truthy) and isinstance(expr.operand, n.BoolLit) and expr.operand.value


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)


def _plain(operand: n.Operand) -> str:
    from dsl.formatter import format_operand

    return format_operand(operand).strip('"')


def _describe(operand: n.Operand) -> str:
    from dsl.formatter import format_operand

    return format_operand(operand)


def _example_for(operand: n.Operand, kind: Type) -> str:
    what = _describe(operand)
    examples = {
        Type.money: f"compare it, like {what} >= 500 USD",
        Type.number: f"compare it, like {what} >= 1",
        Type.text: f'compare it, like {what} == "x"',
        Type.duration: f"compare it, like {what} > 2d",
        Type.percent: f"compare it, like {what} >= 50%",
        Type.time: f"compare it, like {what} >= 09:00",
        Type.weekday: f"compare it, like {what} == mon",
        Type.list: f'use has, like {what} has "x"',
    }
    return examples.get(kind, "compare it with a value")


def _ordering_key(operand: n.Operand) -> Decimal | int | None:
    if isinstance(operand, n.NumberLit | n.PercentLit):
        return operand.value
    if isinstance(operand, n.DurationLit):
        return operand.value.seconds
    if isinstance(operand, n.TimeLit):
        return operand.hour * 60 + operand.minute
    return None  # money bounds may differ in currency: compared only at run time


def validate(
    policy: n.Policy,
    text: str,
    *,
    known_templates: Collection[str] | None = None,
    fx_currencies: Collection[str] | None = None,
    retry_budget: int = DEFAULT_RETRY_BUDGET,
) -> list[Diagnostic]:
    """Every semantic error and warning in ``policy`` (parsed from ``text``), in source order."""
    checker = _Checker(text.splitlines(), known_templates, fx_currencies, retry_budget)
    checker.policy(policy)
    return sorted(checker.found, key=lambda d: (d.line, d.col, d.severity != Severity.error))


__all__ = ["DEFAULT_RETRY_BUDGET", "validate"]
