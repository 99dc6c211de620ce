"""Shared settings of the DSL tests: the templates and exchange rates the golden corpus is checked with."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from rules.money import FxRates

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
VALID = HERE / "valid"
EXAMPLES = HERE.parent.parent / "examples" / "policies"

TEMPLATES = frozenset({"payment_failed", "reminder_short", "final_notice", "vip_personal", "vip_followup"})
RATES = FxRates("USD", {"EUR": Decimal("1.08"), "CAD": Decimal("0.73")})


def valid_policies() -> list[Path]:
    return sorted(VALID.glob("*.policy")) + sorted(EXAMPLES.glob("*.policy"))
