"""Promote an experiment's arm: the policy as the arm planned it, without the experiment, in the canonical layout.

The arm's statements go in place of the base statements they replace (``dsl.arms``: the same substitution the
compiler plans the arm with), so the new policy plans every case as the arm did. Comments inside the experiment
block (and right above it) and inside the statements the arm replaced go with them; the others stay where they
were.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, TypeVar, cast

from dsl import nodes as n
from dsl.arms import arm_policy, experiment_of
from dsl.errors import Diagnostic, PolicyValidationError, did_you_mean, one_of
from dsl.formatter import format_tree
from dsl.parser import parse
from dsl.validator import validate

_V = TypeVar("_V")


def promote_arm(source: str, arm: str) -> str:
    """The policy ``source`` with ``arm``'s statements in place of those they replace and no experiment block,
    formatted. Promoting the control (an arm without statements) gives the base policy without the experiment.

    Raises PolicySyntaxError / PolicyValidationError when ``source`` is not a valid policy, and
    PolicyValidationError when it runs no experiment or has no arm called ``arm``.
    """
    tree = parse(source)
    errors = [d for d in validate(tree, source) if d.is_error]
    if errors:
        raise PolicyValidationError(errors)
    lines = source.splitlines()
    experiment = experiment_of(tree)
    if experiment is None:
        message = "this policy runs no experiment: there is no arm to promote"
        raise PolicyValidationError([_diagnostic(tree, message, lines)])
    chosen = next((a for a in experiment.arms if a.name.text == arm), None)
    if chosen is None:
        names = [a.name.text for a in experiment.arms]
        hint = did_you_mean(arm, names) or f": its arms are {one_of(names, 'and')}"
        message = f'experiment "{experiment.name}" has no arm "{arm}"{hint}'
        raise PolicyValidationError([_diagnostic(experiment, message, lines)])

    result = arm_policy(tree.statements, chosen)
    moved = {id(s) for s in chosen.statements}
    # the arm's statements lose their places: they sit elsewhere now, and comments are put back by place
    statements = tuple(_unplaced(s) if id(s) in moved else s for s in result.statements)
    gone = [(_comments_above(experiment.line, lines), experiment.end_line)]
    gone += [(s.line, _last_line(s)) for s in result.replaced]
    comments = tuple(c for c in tree.comments if not any(a <= c.line <= b for a, b in gone))
    promoted = n.Policy(
        tree.name, statements, line=tree.line, col=tree.col, end_line=tree.end_line, comments=comments
    )
    return format_tree(promoted)


def _diagnostic(node: n.Node, message: str, lines: list[str]) -> Diagnostic:
    source = lines[node.line - 1] if 0 < node.line <= len(lines) else ""
    return Diagnostic(node.line, node.col, message, source_line=source)


def _comments_above(line: int, lines: list[str]) -> int:
    """The first of the comment lines right above ``line`` (they speak of what is on it), or ``line``."""
    while line > 1 and lines[line - 2].strip().startswith("#"):
        line -= 1
    return line


def _last_line(statement: n.Statement) -> int:
    end = getattr(statement, "end_line", 0)
    return end if isinstance(end, int) and end else statement.line


def _unplaced(value: _V) -> _V:
    """``value`` with every position (line, column, end line) inside it set to 0: unknown."""
    if isinstance(value, tuple):
        return cast(_V, tuple(_unplaced(v) for v in value))
    if not isinstance(value, n.Node):
        return value
    changes: dict[str, Any] = {}
    for f in fields(value):
        if f.name in ("line", "col", "end_line"):
            changes[f.name] = 0
        else:
            changes[f.name] = _unplaced(getattr(value, f.name))
    return replace(value, **changes)


__all__ = ["promote_arm"]
