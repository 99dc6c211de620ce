"""A whole policy version tested against the active one: the active policy with an experiment whose arm
``candidate`` plans exactly as the candidate would.

The test is an ordinary experiment block (``dsl.arms``), so assignment, results, guardrails and promotion work as
for any experiment: arm ``current`` (no statements: the active policy as written) and arm ``candidate``, whose
statements replace the active's. An arm replaces; it cannot remove. So the candidate's statements are written so
that, put in place of the active's, they leave the candidate's policy:

- every timing line, cadence, offers, skip and override of the candidate (an empty ``offers`` block stands for
  "no offers");
- the candidate's plans, regrouped under the active's plan lines where the segments are grouped differently
  (a merged plan is written once per plan of the active it replaces).

What an arm cannot say is refused, with a PolicyValidationError at the candidate's line and column: other
segments, another holdout, another policy name (the draws depend on it), an experiment in either text, a statement
of the active with nothing in the candidate to replace it, a plan of the active the candidate splits.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from dsl import nodes as n
from dsl.arms import ARM_KINDS, experiment_of, replaces
from dsl.errors import Diagnostic, PolicyValidationError
from dsl.formatter import format_tree
from dsl.parser import parse
from dsl.promote import _unplaced
from dsl.validator import MAX_EXPERIMENT_NAME, _always_true, validate

#: the arms of a challenge: the active policy as written, and the candidate
CURRENT_ARM = "current"
CANDIDATE_ARM = "candidate"


def challenge_source(active_source: str, candidate_source: str, share: Decimal, *, name: str) -> str:
    """The active policy (``active_source``) with an experiment ``name``: arm ``current`` at 100 - ``share``
    percent, arm ``candidate`` at ``share`` percent planning as ``candidate_source`` does. Formatted.

    Raises PolicySyntaxError / PolicyValidationError when either text is not a valid policy, PolicyValidationError
    (at the candidate's line and column) when the candidate cannot be an arm of the active policy, and ValueError
    for a share outside 0-100 or a name an experiment cannot have.
    """
    share = _share(share)
    if not name.strip() or '"' in name or "\n" in name or len(name) > MAX_EXPERIMENT_NAME:
        raise ValueError(f"an experiment name is 1 to {MAX_EXPERIMENT_NAME} characters, without quotes: {name!r}")
    active, candidate = _valid(active_source), _valid(candidate_source)
    refusal = _Refusal(candidate, candidate_source.splitlines())
    body = _arm_statements(active, candidate, refusal)
    refusal.raise_if_any()
    experiment = n.Experiment(
        name,
        (
            n.Arm(n.Name(CURRENT_ARM), n.PercentLit(Decimal(100) - share)),
            n.Arm(n.Name(CANDIDATE_ARM), n.PercentLit(share), tuple(_unplaced(s) for s in body)),
        ),
        (),
    )
    tree = n.Policy(
        active.name,
        (*active.statements, experiment),
        line=active.line,
        col=active.col,
        end_line=active.end_line,
        comments=active.comments,
    )
    text = format_tree(tree)
    errors = [d for d in validate(parse(text), text) if d.is_error]
    if errors:  # pragma: no cover - the refusals above are meant to leave nothing for the checks to find
        raise PolicyValidationError(errors)
    return text


def _share(share: Decimal) -> Decimal:
    try:
        value = Decimal(share)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"a share is a percentage between 0 and 100, not {share!r}") from None
    if not value.is_finite() or not 0 < value < 100:
        raise ValueError(f"a share is a percentage between 0 and 100 (both left out), not {share}")
    return Decimal(format(value.normalize(), "f"))  # 10.0 -> 10 (never 1E+1: the text writes it out)


def _valid(source: str) -> n.Policy:
    tree = parse(source)
    errors = [d for d in validate(tree, source) if d.is_error]
    if errors:
        raise PolicyValidationError(errors)
    return tree


class _Refusal:
    """What the candidate asks that an arm cannot say, each at the candidate's line and column."""

    def __init__(self, candidate: n.Policy, lines: list[str]) -> None:
        self.candidate = candidate
        self.lines = lines
        self.found: list[Diagnostic] = []

    def at(self, node: n.Node | None, message: str) -> None:
        node = node if node is not None and node.line else self.candidate
        source = self.lines[node.line - 1] if 0 < node.line <= len(self.lines) else ""
        self.found.append(Diagnostic(node.line, node.col, message, source_line=source))

    def raise_if_any(self) -> None:
        if self.found:
            self.found.sort(key=lambda d: (d.line, d.col))
            raise PolicyValidationError(self.found)


def _arm_statements(active: n.Policy, candidate: n.Policy, refusal: _Refusal) -> list[n.Statement]:
    """The candidate's statements, written as an arm of ``active``; what cannot be written goes to ``refusal``."""
    _same_base(active, candidate, refusal)
    kept = [s for s in candidate.statements if type(s) in ARM_KINDS and not isinstance(s, n.Plan)]
    written = {replaces(s) for s in kept}
    body: list[n.Statement] = []
    for statement in active.statements:
        if type(statement) not in ARM_KINDS or isinstance(statement, n.Plan) or replaces(statement) in written:
            continue
        if isinstance(statement, n.Offers):
            body.append(n.Offers(()))  # the candidate offers nothing: an empty block says so
            written.add(replaces(statement))
            continue
        kind = _words(statement)
        refusal.at(
            None,
            f"the active version has {kind} (line {statement.line}) and this version has none: a test can put "
            "another in its place but cannot remove it; write the one you want instead",
        )
    return body + kept + _plans(active, candidate, refusal)


def _same_base(active: n.Policy, candidate: n.Policy, refusal: _Refusal) -> None:
    """What belongs to the policy itself and not to an arm must be the same in both."""
    if candidate.name != active.name:
        refusal.at(
            None,
            f'this version is called "{candidate.name}" and the active one "{active.name}": the holdout and the '
            "draws depend on the name, so a test keeps the active version's; rename it back to test it",
        )
    for policy, which in ((active, "the active version"), (candidate, "this version")):
        experiment = experiment_of(policy)
        if experiment is not None:
            node = experiment if policy is candidate else None
            refusal.at(
                node,
                f'{which} runs experiment "{experiment.name}" (line {experiment.line}): a policy runs one '
                "experiment at a time; promote an arm or end it before testing a whole version",
            )
    active_segments = [s for s in active.statements if isinstance(s, n.Segment)]
    candidate_segments = [s for s in candidate.statements if isinstance(s, n.Segment)]
    if candidate_segments != active_segments:
        differ = next(
            (c for c, a in zip(candidate_segments, active_segments, strict=False) if c != a),
            candidate_segments[len(active_segments)] if len(candidate_segments) > len(active_segments) else None,
        )
        refusal.at(
            differ,
            "this version's segments differ from the active version's: segments belong to the policy, not to an "
            "arm, so a test needs the same segments, in the same order; change them in a version of their own",
        )
    active_holdout = next((s for s in active.statements if isinstance(s, n.Holdout)), None)
    candidate_holdout = next((s for s in candidate.statements if isinstance(s, n.Holdout)), None)
    if active_holdout != candidate_holdout:
        refusal.at(
            candidate_holdout,
            f"this version's holdout ({_holdout_words(candidate_holdout)}) differs from the active version's "
            f"({_holdout_words(active_holdout)}): the holdout is drawn before any test, so a test keeps the active "
            "version's",
        )


def _plans(active: n.Policy, candidate: n.Policy, refusal: _Refusal) -> list[n.Statement]:
    """The candidate's plans as an arm writes them: one in place of each of the active's plans (under the same
    segments), then those for segments the active plans only ``otherwise``, then the candidate's ``otherwise``."""
    segments = [s.name.text for s in candidate.statements if isinstance(s, n.Segment)]
    plans = [s for s in candidate.statements if isinstance(s, n.Plan)]
    fallback = next((p for p in plans if not p.segments), None)
    planned_by: dict[str, n.Plan | None] = {
        name: next((p for p in plans if name in {s.text for s in p.segments}), fallback) for name in segments
    }
    out: list[n.Statement] = []
    covered: set[str] = set()
    for plan in (s for s in active.statements if isinstance(s, n.Plan) and s.segments):
        names = [s.text for s in plan.segments]
        covered |= set(names)
        chosen = {id(planned_by.get(name)): planned_by.get(name) for name in names}
        if len(chosen) == 1 and (only := next(iter(chosen.values()))) is not None:
            out.append(_plan_for(only, plan.segments))
            continue
        split = next((p for p in chosen.values() if p is not None), None)
        refusal.at(
            split,
            f"the active version plans {', '.join(names)} together (line {plan.line}) and this version plans them "
            "apart: an arm replaces a plan for the same segments and cannot split one; test it with the same "
            "grouping first",
        )
    rest: dict[int, tuple[n.Plan, list[n.Name]]] = {}
    for plan in plans:
        for segment in plan.segments:
            if segment.text not in covered:
                rest.setdefault(id(plan), (plan, []))[1].append(segment)
    out += [_plan_for(plan, tuple(names)) for plan, names in rest.values()]
    if fallback is not None:
        out.append(fallback)
    elif any(isinstance(s, n.Plan) and not s.segments for s in active.statements) and not _catches_all(candidate):
        old = next(s for s in active.statements if isinstance(s, n.Plan) and not s.segments)
        refusal.at(
            None,
            f"the active version has a plan otherwise (line {old.line}) and this version has none: a test can "
            "replace it but not remove it; give this version a plan otherwise",
        )
    return out


def _plan_for(plan: n.Plan, segments: tuple[n.Name, ...]) -> n.Plan:
    if tuple(s.text for s in segments) == tuple(s.text for s in plan.segments):
        return plan
    return n.Plan(tuple(n.Name(s.text) for s in segments), plan.items)


def _catches_all(policy: n.Policy) -> bool:
    """Whether a segment takes every case (``otherwise`` or ``when true``): no case is left to ``plan otherwise``."""
    return any(isinstance(s, n.Segment) and _always_true(s.condition) for s in policy.statements)


def _words(statement: n.Statement) -> str:
    """``statement``'s kind in the words of a sentence: "a cadence line", "a business hours line in US-FL"."""
    kind = ARM_KINDS[type(statement)]
    if isinstance(statement, n.Offers):
        return "offers"
    if isinstance(statement, n.Override):
        return "an override"
    regions = getattr(statement, "regions", ())
    return f"a {kind} line" + (f" in {', '.join(r.text for r in regions)}" if regions else "")


def _holdout_words(holdout: n.Holdout | None) -> str:
    if holdout is None:
        return "none"
    share = format(holdout.percent.value.normalize(), "f")
    return f"{share}%" + (" with retries" if holdout.with_retries else "")


__all__ = ["CANDIDATE_ARM", "CURRENT_ARM", "challenge_source"]
