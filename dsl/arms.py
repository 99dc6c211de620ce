"""An experiment's arm as a policy: the base policy with the arm's statements in place of those they replace.

The one definition of what an arm means, used three times: the validator checks each arm's policy with the
policy's own checks, the compiler compiles it, and ``dsl.promote_arm`` writes it out as the new policy.

What an arm's statement replaces in the base policy (``replaces``):

- ``plan for a, b``: the base plan for exactly those segments (the same set); with none, the plan is added;
- ``plan otherwise``: the base's ``plan otherwise`` (or it is added);
- ``cadence``, ``offers``, ``skip``, ``override``: every base statement of that kind;
- ``business hours`` / ``quiet hours``: the base's line for the same regions (none: the default line).

Segments, the holdout and experiments belong to the base policy alone (``ARM_KINDS`` says what an arm may write).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from dsl import nodes as n

#: the statements an arm may write, in the words its error messages use
ARM_KINDS: dict[type, str] = {
    n.Plan: "plan",
    n.Cadence: "cadence",
    n.Offers: "offers",
    n.BusinessHours: "business hours",
    n.QuietHours: "quiet hours",
    n.Skip: "skip",
    n.Override: "override",
}


def allowed_in_arm(statement: n.Statement) -> bool:
    return type(statement) in ARM_KINDS


def replaces(statement: n.Statement) -> Hashable:
    """What ``statement`` stands for: an arm's statement replaces the base statements with the same key."""
    if isinstance(statement, n.Plan):
        return ("plan", frozenset(s.text for s in statement.segments))
    if isinstance(statement, n.BusinessHours | n.QuietHours):
        return (type(statement).__name__, frozenset(r.text for r in statement.regions))
    return (type(statement).__name__,)


@dataclass(frozen=True)
class ArmPolicy:
    """The statements of an arm's policy (the base's, the arm's in place of those replaced, no experiment) and
    the base statements the arm replaced."""

    statements: tuple[n.Statement, ...]
    replaced: tuple[n.Statement, ...]


def arm_policy(statements: Iterable[n.Statement], arm: n.Arm) -> ArmPolicy:
    """The base ``statements`` with ``arm``'s put in place of the ones they replace.

    An arm's statement goes where the first base statement it replaces was; one that replaces none goes after the
    last statement of its kind (the arm's own, or else the base's), or last. Statements an arm may not write
    (segments, holdout, experiment) are left out: the validator reports them.
    """
    # (written by the arm?, statement)
    out: list[tuple[bool, n.Statement]] = [(False, s) for s in statements if not isinstance(s, n.Experiment)]
    replaced: list[n.Statement] = []
    for statement in arm.statements:
        if not allowed_in_arm(statement):
            continue
        key = replaces(statement)
        gone = [i for i, (own, base) in enumerate(out) if not own and replaces(base) == key]
        if gone:
            replaced += [out[i][1] for i in gone]
            at = gone[0]
            out = [entry for i, entry in enumerate(out) if i not in gone]
        else:
            same = [i for i, (_, s) in enumerate(out) if replaces(s) == key]
            kind = [i for i, (_, s) in enumerate(out) if type(s) is type(statement)]
            at = (same or kind or [len(out) - 1])[-1] + 1
        out.insert(at, (True, statement))
    return ArmPolicy(tuple(s for _, s in out), tuple(replaced))


def experiment_of(policy: n.Policy) -> n.Experiment | None:
    """The policy's experiment (the first, when it wrongly has several)."""
    return next((s for s in policy.statements if isinstance(s, n.Experiment)), None)


__all__ = ["ARM_KINDS", "ArmPolicy", "allowed_in_arm", "arm_policy", "experiment_of", "replaces"]
