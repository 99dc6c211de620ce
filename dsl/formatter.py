"""The canonical text of a policy, so that versions diff cleanly.

Two-space indentation, one blank line between groups (segments, timing, offers, each plan), segment
conditions, offer lists and step delays aligned in columns, comments kept where they were. Formatting is
stable: ``format(parse(format(parse(t))))`` equals ``format(parse(t))``, and both texts parse to equal trees.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl import nodes as n

INDENT = "  "


@dataclass(frozen=True)
class _Line:
    source_line: int  # where the statement was, to put comments back next to it (0: unknown)
    depth: int
    text: str
    blank_before: bool = False


def format_operand(operand: n.Operand) -> str:
    if isinstance(operand, n.FieldRef):
        return operand.path
    if isinstance(operand, n.MoneyLit):
        return f"{operand.amount} {operand.currency}"
    if isinstance(operand, n.NumberLit):
        return str(operand.value)
    if isinstance(operand, n.StringLit):
        return f'"{operand.value}"'
    if isinstance(operand, n.DurationLit):
        return str(operand.value)
    if isinstance(operand, n.PercentLit):
        return f"{operand.value}%"
    if isinstance(operand, n.TimeLit):
        return str(operand)
    if isinstance(operand, n.DayLit):
        return operand.day
    return "true" if operand.value else "false"


def format_expr(expr: n.Expr) -> str:
    if isinstance(expr, n.Or):
        return " or ".join(format_expr(item) for item in expr.items)
    if isinstance(expr, n.And):
        return " and ".join(_wrap(item, n.Or) for item in expr.items)
    if isinstance(expr, n.Not):
        inner = format_expr(expr.expr)
        return f"not {inner}" if isinstance(expr.expr, n.Truthy | n.Not) else f"not ({inner})"
    if isinstance(expr, n.Compare):
        return f"{format_operand(expr.left)} {expr.op} {format_operand(expr.right)}"
    if isinstance(expr, n.InList):
        items = ", ".join(format_operand(i) for i in expr.items)
        return f"{format_operand(expr.left)} {'not in' if expr.negated else 'in'} [{items}]"
    if isinstance(expr, n.Has):
        return f"{format_operand(expr.left)} has {format_operand(expr.item)}"
    if isinstance(expr, n.Between):
        low, high = format_operand(expr.low), format_operand(expr.high)
        return f"{format_operand(expr.value)} between {low} and {high}"
    return format_operand(expr.operand)


def _wrap(expr: n.Expr, kinds: type | object) -> str:
    text = format_expr(expr)
    return f"({text})" if isinstance(expr, kinds) else text  # type: ignore[arg-type]


def _regions(regions: tuple[n.Text, ...]) -> str:
    return "in " + ", ".join(f'"{r.text}"' for r in regions) + " " if regions else ""


def _hours(entry: n.HoursEntry) -> str:
    days = entry.first_day.day + (f"-{entry.last_day.day}" if entry.last_day else "")
    return f"{days} {entry.start}-{entry.end}"


def _offers(offers: tuple[n.Offer, ...]) -> str:
    return ", ".join(o.name + (f" {o.term}" if o.term else "") for o in offers)


def _statement(statement: n.Statement) -> str:
    if isinstance(statement, n.BusinessHours):
        return (
            f"business hours {_regions(statement.regions)}{', '.join(_hours(e) for e in statement.entries)}"
        )
    if isinstance(statement, n.QuietHours):
        return f"quiet hours {_regions(statement.regions)}{statement.start}-{statement.end}"
    if isinstance(statement, n.Skip):
        return "skip " + ", ".join(i.text for i in statement.items)
    if isinstance(statement, n.Cadence):
        items = ", ".join(
            f"max {i.count} per {i.period}" if isinstance(i, n.CadenceMax) else f"min gap {i.gap}"
            for i in statement.items
        )
        return f"cadence {items}" + (" across all channels" if statement.across_all_channels else "")
    if isinstance(statement, n.Override):
        ignores = ", ".join(i.text.replace("_", " ") for i in statement.ignores)
        return f"override when {format_expr(statement.condition)}: ignore {ignores}"
    if isinstance(statement, n.Holdout):
        return f"holdout {format_operand(statement.percent)}" + (" with retries" if statement.with_retries else "")
    raise TypeError(statement)  # pragma: no cover - blocks and segments are laid out by the caller


def _step(step: n.Step, after_width: int) -> str:
    after = str(step.after).ljust(after_width)
    if isinstance(step, n.RetryStep):
        text = f"step after {after} retry payment"
    else:
        channels = ", ".join(c.text for c in step.channels)
        text = f'step after {after} via {channels} template "{step.template.text}"'
        if step.variants:
            text += " variants " + ", ".join(f"{v.name} {v.weight}%" for v in step.variants)
    if step.condition is not None:
        text += f" when {format_expr(step.condition)}"
    return text


def _plan_lines(plan: n.Plan, depth: int, spaced: bool) -> list[_Line]:
    head = "plan otherwise" if not plan.segments else "plan for " + ", ".join(s.text for s in plan.segments)
    lines = [_Line(plan.line, depth, head, blank_before=spaced)]
    width = max((len(str(s.after)) for s in plan.steps), default=0)
    for item in plan.items:
        if isinstance(item, n.Priority):
            text = f"priority {item.level.text}"
        elif isinstance(item, n.Escalate):
            text = f'escalate after {item.after} to "{item.team.text}"'
        elif isinstance(item, n.GiveUp):
            text = f"give up after {item.after}"
        else:
            text = _step(item, width)
        lines.append(_Line(item.line, depth + 1, text))
    lines.append(_Line(plan.end_line, depth, "end"))
    return lines


def _offers_lines(offers: n.Offers, depth: int, spaced: bool) -> list[_Line]:
    heads = [f"when {format_expr(r.condition)}" if r.condition else "otherwise" for r in offers.rules]
    width = max((len(h) for h in heads), default=0)
    lines = [_Line(offers.line, depth, "offers", blank_before=spaced)]
    for head, rule in zip(heads, offers.rules, strict=True):
        lines.append(_Line(rule.line, depth + 1, f"{head.ljust(width)} offer {_offers(rule.offers)}"))
    lines.append(_Line(offers.end_line, depth, "end"))
    return lines


def _experiment_lines(experiment: n.Experiment, depth: int, spaced: bool) -> list[_Line]:
    """The block; an arm's own statements one level in, without blank lines, closed by their ``end``."""
    lines = [_Line(experiment.line, depth, f'experiment "{experiment.name}"', blank_before=spaced)]
    for arm in experiment.arms:
        lines.append(_Line(arm.line, depth + 1, f"arm {arm.name.text} {format_operand(arm.weight)}"))
        if arm.statements:
            lines += _statement_lines(arm.statements, depth + 2, spaced=False)
            lines.append(_Line(arm.end_line, depth + 1, "end"))
    for guardrail in experiment.guardrails:
        text = f"guardrail {guardrail.metric.text} {format_operand(guardrail.percent)}"
        lines.append(_Line(guardrail.line, depth + 1, text))
    lines.append(_Line(experiment.end_line, depth, "end"))
    return lines


def _statement_lines(statements: tuple[n.Statement, ...], depth: int, *, spaced: bool = True) -> list[_Line]:
    """Statements at ``depth``; ``spaced``: a blank line between groups (segments, timing, each block)."""
    lines: list[_Line] = []
    previous = ""
    i = 0
    while i < len(statements):
        statement = statements[i]
        if isinstance(statement, n.Segment):
            run = []
            while i < len(statements) and isinstance(statements[i], n.Segment):
                segment = statements[i]
                assert isinstance(segment, n.Segment)
                run.append(segment)
                i += 1
            width = max(len(s.name.text) for s in run)
            for k, segment in enumerate(run):
                tail = "otherwise" if segment.condition is None else f"when {format_expr(segment.condition)}"
                text = f"segment {segment.name.text.ljust(width)} {tail}"
                lines.append(_Line(segment.line, depth, text, blank_before=spaced and k == 0 and previous != ""))
            previous = "segments"
            continue
        if isinstance(statement, n.Offers):
            lines.extend(_offers_lines(statement, depth, spaced))
            previous = "block"
        elif isinstance(statement, n.Plan):
            lines.extend(_plan_lines(statement, depth, spaced))
            previous = "block"
        elif isinstance(statement, n.Experiment):
            lines.extend(_experiment_lines(statement, depth, spaced))
            previous = "block"
        else:
            blank = spaced and previous not in ("", "timing")
            lines.append(_Line(statement.line, depth, _statement(statement), blank_before=blank))
            previous = "timing"
        i += 1
    return lines


def _layout(policy: n.Policy) -> list[_Line]:
    return [
        _Line(policy.line, 0, f'policy "{policy.name}"'),
        *_statement_lines(policy.statements, 1),
        _Line(policy.end_line, 0, "end"),
    ]


def format_tree(policy: n.Policy) -> str:
    """The canonical text of ``policy``, comments included, ending with one newline."""
    full = [c for c in policy.comments if not c.trailing]
    trailing = {c.line: c.text for c in policy.comments if c.trailing}
    out: list[str] = []
    k = 0
    for line in _layout(policy):
        if line.blank_before and out and out[-1] != "":
            out.append("")
        while k < len(full) and line.source_line and full[k].line < line.source_line:
            depth = line.depth or (1 if out else 0)  # before the policy's closing end: inside the policy
            out.append(INDENT * depth + full[k].text)
            k += 1
        text = INDENT * line.depth + line.text
        comment = trailing.pop(line.source_line, None) if line.source_line else None
        out.append(f"{text}  {comment}" if comment else text)
    out.extend(c.text for c in full[k:])
    # a trailing comment on a line that produced no statement (inside a wrapped line) is kept as a full line
    out.extend(text for _, text in sorted(trailing.items()))
    return "\n".join(out) + "\n"
