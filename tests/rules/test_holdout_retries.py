"""A held-out case gets nothing (``holdout 10%``), or only the plan's card retries (``holdout 10% with retries``):
never a message, never an escalation, never an arm. Cases outside the holdout are planned alike either way."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dsl import compile_policy
from rules.planner import assignment_unit, in_holdout, plan
from rules.policy import CompiledPolicy
from rules.vocabulary import StepAction

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "tests" / "dsl" / "facts-sample.jsonl").read_text().splitlines()[0])
WITH_RETRIES = (ROOT / "tests" / "dsl" / "valid" / "holdout_with_retries.policy").read_text(encoding="utf-8")
PLAIN = WITH_RETRIES.replace("holdout 10% with retries", "holdout 10%")
EXPERIMENT = """
  experiment "x"
    arm control 50%
    arm other 50%
      plan otherwise
        step after 1h via sms template "reminder_short"
        step after 2d retry payment
      end
    end
  end
end
"""


def facts(customer: str, **customer_fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(SAMPLE)
    out["customer"]["id"] = customer
    out["customer"].update(customer_fields)
    return out


def customers(policy: CompiledPolicy, held: bool, count: int = 20) -> list[str]:
    found = [f"c-{i}" for i in range(2000) if in_holdout(policy, assignment_unit(facts(f"c-{i}"))) is held]
    return found[:count]


@pytest.fixture(scope="module")
def kept() -> CompiledPolicy:
    return compile_policy(WITH_RETRIES, version=1)


@pytest.fixture(scope="module")
def plain() -> CompiledPolicy:
    return compile_policy(PLAIN, version=1)


def test_a_held_out_case_keeps_only_the_retries(kept: CompiledPolicy) -> None:
    for customer in customers(kept, held=True):
        for vip in (False, True):
            made = plan(kept, facts(customer, tags=["vip"] if vip else [], vip=vip))
            assert made.holdout and made.experiment is None and made.escalation is None
            assert made.steps and {s.action for s in made.steps} == {StepAction.RETRY_PAYMENT}
            assert all(s.channel is None and s.template is None for s in made.steps)
            assert [s.n for s in made.steps] == list(range(1, len(made.steps) + 1))
        everything = plan(kept, facts(customer, vip=False))
        assert [s.rule for s in everything.steps] == [18, 20]  # both retries of plan otherwise, no message
        assert everything.give_up_after == "P14D"


def test_a_plain_holdout_gets_nothing_at_all(plain: CompiledPolicy) -> None:
    for customer in customers(plain, held=True):
        for vip in (False, True):
            made = plan(plain, facts(customer, vip=vip))
            assert made.holdout and made.steps == () and made.escalation is None


def test_outside_the_holdout_nothing_changes(kept: CompiledPolicy, plain: CompiledPolicy) -> None:
    for customer in customers(kept, held=False):
        for vip in (False, True):
            with_retries, without = (plan(p, facts(customer, vip=vip)) for p in (kept, plain))
            assert not with_retries.holdout and with_retries == without
            actions = [s.action for s in with_retries.steps]
            assert StepAction.MESSAGE in actions and StepAction.RETRY_PAYMENT in actions
    vip = plan(kept, facts(customers(kept, held=False)[0], vip=True))
    assert vip.escalation is not None and vip.escalation.to == "account-managers"


def test_the_holdout_s_retries_are_the_policy_s_not_an_arm_s() -> None:
    policy = compile_policy(WITH_RETRIES.removesuffix("end\n") + EXPERIMENT)
    assert policy.holdout_keeps_retries
    for customer in customers(policy, held=True, count=10):
        made = plan(policy, facts(customer, vip=False))
        assert made.experiment is None and [s.rule for s in made.steps] == [18, 20]
