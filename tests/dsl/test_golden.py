"""The golden corpus: each broken policy under golden/ and the exact diagnostics it must produce.

A ``.expected`` file holds one ``LINE:COL: message`` per diagnostic (warnings say ``warning:``). To accept new
output after a deliberate change of wording, run ``UPDATE_GOLDEN=1 pytest tests/dsl/test_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsl import check
from tests.dsl.helpers import GOLDEN, RATES, TEMPLATES

CASES = sorted(GOLDEN.glob("*.policy"))


def _diagnostics(path: Path) -> str:
    found = check(path.read_text(encoding="utf-8"), known_templates=TEMPLATES, fx_rates=RATES)
    return "".join(d.format("").removeprefix(":") + "\n" for d in found)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    expected_path = path.with_suffix(".expected")
    actual = _diagnostics(path)
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(actual, encoding="utf-8")
    assert actual, f"{path.name} is in the broken corpus but checks clean"
    assert actual == expected_path.read_text(encoding="utf-8")
