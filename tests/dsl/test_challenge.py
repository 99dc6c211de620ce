"""A whole version tested against the active one (``dsl.challenge_source``): the active policy with an experiment
whose ``candidate`` arm is the candidate, and clear refusals (at the candidate's line and column) of what an arm
cannot say. That the candidate arm *plans* as the candidate does is tests/rules/test_challenge_plans.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import PolicyValidationError, challenge_source, check, compile_policy, format_policy, parse, promote_arm
from dsl import nodes as n
from tests.dsl.helpers import RATES, TEMPLATES

ACTIVE = """policy "p"
  segment vip    when customer.vip
  segment repeat when customer.successful_payments >= 1
  segment first  when customer.successful_payments == 0

  business hours mon-fri 09:00-18:00
  cadence max 1 per day
  holdout 5%

  offers
    otherwise offer update_card
  end

  plan for vip
    step after 1h via email template "vip_personal"
  end

  plan for repeat
    step after 2h via email template "payment_failed"
  end

  plan otherwise
    step after 1d via email template "payment_failed"
  end
end
"""
CANDIDATE = (
    ACTIVE.replace("cadence max 1 per day", "cadence max 2 per day\n  skip weekends")
    .replace('after 2h via email template "payment_failed"', 'after 1h via sms template "reminder_short"')
)


def refusal(active: str, candidate: str) -> list[tuple[int, int, str]]:
    with pytest.raises(PolicyValidationError) as raised:
        challenge_source(active, candidate, Decimal(10), name="v2 against v1")
    return [(d.line, d.col, d.message) for d in raised.value.diagnostics]


def line_of(text: str, start: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), 1) if line.strip().startswith(start))


def test_the_challenge_is_the_active_policy_with_a_two_arm_experiment() -> None:
    text = challenge_source(ACTIVE, CANDIDATE, Decimal(10), name="v2 against v1")
    assert text == format_policy(text) and text.startswith(ACTIVE.removesuffix("end\n"))
    assert [d for d in check(text, known_templates=TEMPLATES, fx_rates=RATES) if d.is_error] == []
    experiment = parse(text).statements[-1]
    assert isinstance(experiment, n.Experiment) and experiment.name == "v2 against v1"
    current, candidate = experiment.arms
    assert (current.name.text, current.weight.value, current.statements) == ("current", 90, ())
    assert (candidate.name.text, candidate.weight.value) == ("candidate", 10)
    # every statement of the candidate an arm may write, in the candidate's order
    assert [type(s) for s in candidate.statements] == [n.BusinessHours, n.Cadence, n.Skip, n.Offers, n.Plan, n.Plan,
                                                      n.Plan]
    compiled = compile_policy(text, known_templates=TEMPLATES)
    assert compiled.experiment is not None and [a.name for a in compiled.experiment.arms] == ["current", "candidate"]


def test_promoting_the_candidate_gives_the_candidate_and_the_current_arm_the_active() -> None:
    text = challenge_source(ACTIVE, CANDIDATE, Decimal("12.5"), name="x")
    assert "arm current 87.5%\n" in text and "arm candidate 12.5%\n" in text
    promoted = parse(promote_arm(text, "candidate"))
    expected = parse(CANDIDATE)
    key = lambda s: (type(s).__name__, repr(s))  # noqa: E731 - the order of different kinds does not matter
    assert sorted(promoted.statements, key=key) == sorted(expected.statements, key=key)
    assert parse(promote_arm(text, "current")) == parse(ACTIVE)


def test_a_share_is_written_out_and_must_be_between_0_and_100() -> None:
    text = challenge_source(ACTIVE, CANDIDATE, Decimal("10.0"), name="x")
    assert "arm current 90%\n" in text and "arm candidate 10%\n" in text
    for share in (Decimal(0), Decimal(100), Decimal(-5), Decimal("NaN")):
        with pytest.raises(ValueError, match="between 0 and 100"):
            challenge_source(ACTIVE, CANDIDATE, share, name="x")
    with pytest.raises(ValueError, match="without quotes"):
        challenge_source(ACTIVE, CANDIDATE, Decimal(10), name='say "hi"')


def test_merged_plans_are_written_once_per_plan_they_replace() -> None:
    merged = CANDIDATE.replace(
        '  plan for vip\n    step after 1h via email template "vip_personal"\n  end\n\n', ""
    ).replace("plan for repeat", "plan for vip, repeat")
    text = challenge_source(ACTIVE, merged, Decimal(10), name="x")
    arm = parse(text).statements[-1].arms[1]  # type: ignore[union-attr]
    plans = [s for s in arm.statements if isinstance(s, n.Plan)]
    assert [[s.text for s in p.segments] for p in plans] == [["vip"], ["repeat"], []]
    assert plans[0].items == plans[1].items  # the merged plan, once for each plan of the active


def test_offers_the_candidate_drops_are_an_empty_block() -> None:
    without = CANDIDATE.replace("  offers\n    otherwise offer update_card\n  end\n\n", "")
    text = challenge_source(ACTIVE, without, Decimal(10), name="x")
    assert "\n      offers\n      end\n" in text
    assert compile_policy(text).experiment.arms[1].policy.decide({}).offers == ()  # type: ignore[union-attr]


def test_different_segments_are_refused_at_the_candidate_s_segment() -> None:
    other = CANDIDATE.replace("segment first  when customer.successful_payments == 0",
                              "segment first  when customer.successful_payments == 0 and customer.vip")
    [(line, col, message)] = refusal(ACTIVE, other)
    assert (line, col) == (line_of(other, "segment first"), 3)
    assert message.startswith("this version's segments differ from the active version's")
    fewer = CANDIDATE.replace("  segment first  when customer.successful_payments == 0\n", "")
    [(line, col, message)] = refusal(ACTIVE, fewer)
    assert (line, col) == (1, 1) and "segments differ" in message


def test_a_different_holdout_is_refused_at_the_candidate_s_holdout() -> None:
    for holdout in ("holdout 10%", "holdout 5% with retries"):
        other = CANDIDATE.replace("holdout 5%", holdout)
        [(line, col, message)] = refusal(ACTIVE, other)
        assert (line, col) == (line_of(other, "holdout"), 3)
        assert message.startswith(f"this version's holdout ({holdout.removeprefix('holdout ')}) differs from the "
                                  "active version's (5%)")
    [(line, col, message)] = refusal(ACTIVE, CANDIDATE.replace("  holdout 5%\n", ""))
    assert (line, col) == (1, 1) and "holdout (none)" in message


def test_an_experiment_in_either_text_is_refused() -> None:
    block = '\n  experiment "e"\n    arm a 50%\n    arm b 50%\n  end\nend\n'
    running = CANDIDATE.removesuffix("end\n") + block
    [(line, col, message)] = refusal(ACTIVE, running)
    assert (line, col) == (line_of(running, "experiment"), 3)
    assert message.startswith('this version runs experiment "e"')
    [(line, col, message)] = refusal(ACTIVE.removesuffix("end\n") + block, CANDIDATE)
    assert (line, col) == (1, 1) and message.startswith('the active version runs experiment "e" (line 26)')


def test_what_an_arm_cannot_remove_is_refused() -> None:
    found = refusal(ACTIVE, CANDIDATE.replace("  cadence max 2 per day\n", "").replace(
        "  business hours mon-fri 09:00-18:00\n", ""))
    assert found[1][2] == (
        "the active version has a cadence line (line 7) and this version has none: a test can put another in its "
        "place but cannot remove it; write the one you want instead"
    )
    assert [(line, col) for line, col, _ in found] == [(1, 1), (1, 1)]
    assert "a business hours line (line 6)" in found[0][2] and "a cadence line (line 7)" in found[1][2]
    no_otherwise = CANDIDATE.replace(
        '  plan otherwise\n    step after 1d via email template "payment_failed"\n  end\n',
        '  plan for first\n    step after 1d via email template "payment_failed"\n  end\n',
    )
    [(_, _, message)] = refusal(ACTIVE, no_otherwise)
    assert message.startswith("the active version has a plan otherwise (line 22) and this version has none")


def test_a_split_plan_is_refused_at_the_candidate_s_plan() -> None:
    active = ACTIVE.replace("plan for repeat", "plan for repeat, first")
    [(line, col, message)] = refusal(active, CANDIDATE)
    assert (line, col) == (line_of(CANDIDATE, "plan for repeat"), 3)
    assert message.startswith("the active version plans repeat, first together (line 18) and this version plans "
                              "them apart")


def test_a_renamed_policy_is_refused() -> None:
    [(line, col, message)] = refusal(ACTIVE, CANDIDATE.replace('policy "p"', 'policy "q"'))
    assert (line, col) == (1, 1) and message.startswith('this version is called "q" and the active one "p"')


def test_an_invalid_candidate_raises_its_own_errors() -> None:
    [(line, col, message)] = refusal(ACTIVE, CANDIDATE.replace("plan for vip", "plan for vipp"))
    assert line == line_of(CANDIDATE, "plan for vip") and message.startswith('unknown segment "vipp"')
