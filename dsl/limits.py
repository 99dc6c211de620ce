"""How large a policy may be. Enforced by the language itself (``parse`` and ``validate``), so that ``check``, the
admin's editor, the CLI and ``compile_policy`` all answer the same way: with a Diagnostic, never an exception.

The values leave a wide margin over real policies. examples/policies/standard.policy, a full policy with four
segments, three plans and four offer rules, is 1.9 KB with conditions nested at most one level; a merchant with a
plan per country and product line is still a few hundred lines. The limits are set so that the largest policy that
passes them checks in well under a second and compiles to Python that the interpreter accepts even when called from
a deep stack (a web request, a worker): each segment and offer rule becomes one ``elif`` of a chain, and each level
of nesting one level of parentheses.
"""

from __future__ import annotations

# 64 KiB of text: about 35 times the standard example, 1,500 lines of 40 characters. A 2 MB policy took 13 s to
# check before this cap; 64 KiB checks in a fraction of a second.
MAX_POLICY_CHARS = 64 * 1024
# Parentheses and ``not`` inside one condition. Real conditions use one or two levels; Python's own parser allows
# 200 nested parentheses, and each level here may become two in the compiled code.
MAX_CONDITION_DEPTH = 32
# Segments: one ``elif`` each in the compiled decision, and CPython's compiler recurses once per ``elif``. 3,000
# failed to compile; 1,000 still compile 600 frames down the stack. The test suite's own "thousand-line policy" has
# 520 segments, so 600 keeps it with a margin on both sides.
MAX_SEGMENTS = 600
MAX_PLANS = 600
MAX_STEPS_PER_PLAN = 50
MAX_OFFER_RULES = 200
# Each override is one bit of the compiled decision number.
MAX_OVERRIDES = 32
# Comparisons joined by and/or in one condition.
MAX_CONDITION_PARTS = 500

__all__ = [
    "MAX_CONDITION_DEPTH",
    "MAX_CONDITION_PARTS",
    "MAX_OFFER_RULES",
    "MAX_OVERRIDES",
    "MAX_PLANS",
    "MAX_POLICY_CHARS",
    "MAX_SEGMENTS",
    "MAX_STEPS_PER_PLAN",
]
