"""The recovery policy language: parse, check, format and compile policies.

>>> from dsl import check, compile_policy
>>> problems = check(text)                 # [Diagnostic]: errors and warnings, never raises
>>> policy = compile_policy(text)          # CompiledPolicy, or PolicyError
>>> policy.decide(facts)                   # segment, offers and steps for one case
>>> promote_arm(text, "whatsapp_first")    # the policy as one arm of its experiment planned, without the experiment
>>> challenge_source(active, candidate, Decimal(10), name="v5 against v4")  # a whole version as an arm
"""

from __future__ import annotations

from collections.abc import Collection

from dsl.challenge import challenge_source
from dsl.compiler import build, compile_policy, source_hash
from dsl.errors import Diagnostic, PolicyError, PolicySyntaxError, PolicyValidationError, Severity
from dsl.formatter import format_tree
from dsl.limits import MAX_CONDITION_DEPTH, MAX_POLICY_CHARS, MAX_SEGMENTS
from dsl.nodes import Policy
from dsl.parser import parse
from dsl.promote import promote_arm
from dsl.validator import DEFAULT_RETRY_BUDGET, validate
from rules.money import FxRates
from rules.policy import CompiledPolicy, Decision


def check(
    text: str,
    *,
    known_templates: Collection[str] | None = None,
    fx_rates: FxRates | None = None,
    retry_budget: int = DEFAULT_RETRY_BUDGET,
) -> list[Diagnostic]:
    """Every error and warning in ``text``, in source order. An empty list means the policy is clean.

    Syntax errors come alone (what follows a syntax error cannot be checked for meaning). A policy without errors
    is also compiled, so that what passes ``check`` (and can be submitted and approved) is sure to compile; the
    size limits in dsl.limits keep both steps bounded.
    """
    try:
        tree = parse(text)
    except PolicyError as exc:
        return list(exc.diagnostics)
    found = validate(
        tree,
        text,
        known_templates=known_templates,
        fx_currencies=fx_rates.currencies() if fx_rates else None,
        retry_budget=retry_budget,
    )
    if any(d.is_error for d in found):
        return found
    try:
        build(tree, fx_rates=fx_rates, source_hash=source_hash(text), version=None, warnings=tuple(found))
    except (RecursionError, MemoryError, SyntaxError, ValueError, OverflowError):
        # The limits should make this unreachable; if a policy still cannot be compiled, say so rather than
        # let it through to approval.
        line = tree.line or 1
        message = "this policy is too large or complex to compile: make it smaller (fewer segments or conditions)"
        lines = text.splitlines()
        return [Diagnostic(line, tree.col or 1, message, source_line=lines[line - 1] if lines else ""), *found]
    return found


def format_policy(text: str) -> str:
    """The canonical text of a policy (comments kept). Raises PolicySyntaxError when it does not parse."""
    return format_tree(parse(text))


__all__ = [
    "DEFAULT_RETRY_BUDGET",
    "CompiledPolicy",
    "Decision",
    "Diagnostic",
    "MAX_CONDITION_DEPTH",
    "MAX_POLICY_CHARS",
    "MAX_SEGMENTS",
    "FxRates",
    "Policy",
    "PolicyError",
    "PolicySyntaxError",
    "PolicyValidationError",
    "Severity",
    "challenge_source",
    "check",
    "compile_policy",
    "format_policy",
    "parse",
    "promote_arm",
]
