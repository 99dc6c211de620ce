"""The experiment block: parsed with positions, checked with errors at the line and column at fault, compiled
into rules.policy.CompiledExperiment (each arm a whole policy), formatted, and promoted."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import (
    PolicyError,
    PolicySyntaxError,
    PolicyValidationError,
    check,
    compile_policy,
    format_policy,
    parse,
    promote_arm,
)
from dsl import nodes as n
from tests.dsl.helpers import RATES, TEMPLATES, VALID

BASE = """policy "p"
  segment repeat when customer.successful_payments >= 1
  segment other  otherwise

  business hours mon-fri 09:00-18:00
  business hours in "US-FL" mon-fri 09:00-17:00
  cadence max 1 per day
  holdout 5%

  plan for repeat
    step after 1h via email template "payment_failed"
  end

  plan otherwise
    step after 1d via email template "payment_failed"
  end
"""
EXPERIMENT = """
  experiment "whatsapp first"
    arm control 50%
    arm whatsapp_first 50%
      cadence max 2 per day
      plan for repeat
        step after 1h via whatsapp, email template "reminder_short"
        give up after 14d
      end
    end
    guardrail opt_out 1%
    guardrail stop 0.5%
  end
end
"""
TEXT = BASE + EXPERIMENT


def with_experiment(block: str) -> str:
    return BASE + "\n" + block.rstrip("\n") + "\nend\n"


def errors(text: str) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.message) for d in check(text, known_templates=TEMPLATES, fx_rates=RATES) if d.is_error]


def line_of(text: str, start: str, nth: int = 0) -> int:
    return [k for k, line in enumerate(text.splitlines(), 1) if line.strip().startswith(start)][nth]


# --- parsing -------------------------------------------------------------------------------------------------


def test_the_block_parses_into_arms_and_guardrails() -> None:
    tree = parse(TEXT)
    experiment = tree.statements[-1]
    assert isinstance(experiment, n.Experiment)
    assert experiment.name == "whatsapp first" and experiment.line == line_of(TEXT, "experiment")
    control, arm = experiment.arms
    assert (control.name.text, control.weight.value, control.statements) == ("control", Decimal(50), ())
    assert arm.name.text == "whatsapp_first" and (arm.line, arm.col) == (line_of(TEXT, "arm whatsapp_first"), 5)
    assert [type(s) for s in arm.statements] == [n.Cadence, n.Plan]
    assert arm.end_line == line_of(TEXT, "end", 3)
    assert [(g.metric.text, g.percent.value) for g in experiment.guardrails] == [
        ("opt_out", Decimal(1)),
        ("stop", Decimal("0.5")),
    ]


def test_an_arm_without_statements_needs_no_end_and_one_with_them_does() -> None:
    tree = parse(with_experiment('  experiment "x"\n    arm a 50%\n    arm b 50%\n  end'))
    assert [a.statements for a in tree.statements[-1].arms] == [(), ()]  # type: ignore[union-attr]
    text = with_experiment('  experiment "x"\n    arm a 50%\n    arm b 50%\n      cadence max 2 per day\n  end')
    with pytest.raises(PolicySyntaxError):
        parse(text)  # the arm's statements are not closed: the experiment's end closes the arm, then nothing


def test_an_arm_left_open_is_a_syntax_error_at_the_next_arm() -> None:
    text = with_experiment(
        '  experiment "x"\n    arm a 50%\n    arm b 25%\n      cadence max 2 per day\n    arm c 25%\n  end'
    )
    [(line, col, message)] = errors(text)
    assert (line, col) == (line_of(text, "arm c"), 5)
    assert "an arm with statements of its own closes them with end" in message


def test_a_guardrail_before_an_arm_is_a_syntax_error() -> None:
    text = with_experiment('  experiment "x"\n    arm a 50%\n    guardrail stop 1%\n    arm b 50%\n  end')
    [(line, col, message)] = errors(text)
    assert (line, col) == (line_of(text, "arm b"), 5) and 'found "arm"' in message


# --- errors at the line and column at fault ----------------------------------------------------------------


def test_shares_must_add_up_to_100() -> None:
    text = with_experiment('  experiment "x"\n    arm a 50%\n    arm b 40%\n  end')
    assert errors(text) == [(line_of(text, "arm a"), 11, "arm shares add up to 90%, not 100%")]
    text = with_experiment('  experiment "x"\n    arm a 50%\n    arm b 25.5%\n    arm c 25%\n  end')
    assert errors(text) == [(line_of(text, "arm a"), 11, "arm shares add up to 100.5%, not 100%")]


def test_an_arm_needs_a_share() -> None:
    text = with_experiment('  experiment "x"\n    arm a 100%\n    arm b 0%\n  end')
    assert errors(text) == [(line_of(text, "arm b"), 11, 'arm "b" needs a share above 0%')]


def test_an_experiment_needs_two_arms() -> None:
    text = with_experiment('  experiment "x"\n    arm a 100%\n  end')
    [(line, col, message)] = errors(text)
    assert (line, col) == (line_of(text, "experiment"), 3) and "at least two arms" in message
    text = with_experiment('  experiment "x"\n  end')
    assert [(line, col) for line, col, _ in errors(text)] == [(line_of(text, "experiment"), 3)]


def test_arm_names_are_unique() -> None:
    text = with_experiment('  experiment "x"\n    arm a 50%\n    arm a 50%\n  end')
    first = line_of(text, "arm a")
    assert errors(text) == [(first + 1, 9, f'arm "a" is already defined on line {first}')]


def test_an_arm_may_not_write_segments_the_holdout_or_an_experiment() -> None:
    text = with_experiment(
        '  experiment "x"\n    arm a 50%\n    arm b 50%\n'
        "      segment big when transaction.amount >= 500 USD\n"
        "      holdout 10%\n"
        '      experiment "inner"\n        arm c 50%\n        arm d 50%\n      end\n'
        "    end\n  end"
    )
    found = errors(text)
    assert [(line, col) for line, col, _ in found] == [
        (line_of(text, "segment big"), 7),
        (line_of(text, "holdout 10%"), 7),
        (line_of(text, 'experiment "inner"'), 7),
    ]
    assert found[0][2].startswith("segments belong to the base policy, not to an arm: an arm may write plan, ")
    assert "holdout belongs to the base policy" in found[1][2]
    assert "one experiment at a time" in found[2][2]


def test_a_policy_runs_one_experiment_at_a_time() -> None:
    block = '  experiment "{}"\n    arm a 50%\n    arm b 50%\n  end\n'
    text = with_experiment(block.format("first") + block.format("second"))
    first = line_of(text, "experiment")
    [(line, col, message)] = errors(text)
    assert (line, col) == (line_of(text, 'experiment "second"'), 3)
    assert message.startswith(f'a policy runs one experiment at a time: "first" is on line {first}')
    assert "the holdout is separate" in message


def test_guardrails_name_a_known_metric_once() -> None:
    text = with_experiment(
        '  experiment "x"\n    arm a 50%\n    arm b 50%\n'
        "    guardrail opt_outs 1%\n    guardrail stop 1%\n    guardrail stop 2%\n    guardrail complaint 100%\n"
        "  end"
    )
    found = errors(text)
    assert found[0] == (
        line_of(text, "guardrail opt_outs"),
        15,
        'unknown guardrail metric "opt_outs" (the metrics are opt_out, stop, complaint and retry_fee)'
        ' — did you mean "opt_out"?',
    )
    assert found[1] == (line_of(text, "guardrail stop", 1), 15, f"guardrail stop is already set on line "
                                                                f"{line_of(text, 'guardrail stop')}")
    assert found[2][:2] == (line_of(text, "guardrail complaint"), 25) and "under 100 points" in found[2][2]


def test_an_arm_policy_is_checked_like_a_policy_at_the_arm_s_lines() -> None:
    text = with_experiment(
        '  experiment "x"\n    arm a 50%\n    arm b 50%\n'
        "      plan for repeat, other\n        step after 2h via sms template \"reminder_short\"\n      end\n"
        "      plan for nobody\n        step after 2h via fax template \"nope\"\n      end\n"
        "    end\n  end"
    )
    found = errors(text)
    plan_line = line_of(text, "plan for repeat, other")
    nobody = line_of(text, "plan for nobody")
    assert found == [
        (plan_line, 16, 'segment "repeat" already has a plan on line 10'),  # the arm's plan adds: it overlaps
        (nobody, 16, 'unknown segment "nobody"'),
        (nobody + 1, 27, 'unknown channel "fax": use email, sms or whatsapp'),
        (nobody + 1, 40, 'unknown template "nope"'),
    ]


def test_an_error_of_the_base_policy_is_reported_once() -> None:
    text = TEXT.replace('"payment_failed"\n  end\n\n  plan otherwise', '"nope"\n  end\n\n  plan otherwise')
    assert [m for _, _, m in errors(text)] == ['unknown template "nope"']


def test_an_arm_replacing_the_wrong_statement_is_caught_where_the_arm_wrote_it() -> None:
    # two cadence lines in one arm: the second is the arm's duplicate, not the base's
    text = TEXT.replace("      cadence max 2 per day\n", "      cadence max 2 per day\n      cadence max 3 per week\n")
    first = line_of(text, "cadence max 2")
    assert errors(text) == [(line_of(text, "cadence max 3"), 7, f"cadence is already set on line {first}; keep one")]


# --- compiled ---------------------------------------------------------------------------------------------------


def test_the_experiment_compiles_into_rules_types() -> None:
    policy = compile_policy(TEXT, version=4)
    experiment = policy.experiment
    assert experiment is not None
    assert (experiment.name, experiment.line, experiment.control) == ("whatsapp first", line_of(TEXT, "experiment"),
                                                                      "control")
    assert experiment.guardrails == (("opt_out", Decimal("0.01")), ("stop", Decimal("0.005")))
    control, arm = experiment.arms
    assert (control.name, control.weight, control.policy, control.line) == ("control", 50, None,
                                                                            line_of(TEXT, "arm control"))
    assert arm.policy is not None and arm.policy.experiment is None
    assert (arm.policy.name, arm.policy.version, arm.policy.holdout_percent) == ("p", 4, 5)
    assert arm.policy.timing.cadence is not None and arm.policy.timing.cadence.per_day == 2
    assert len(arm.policy.timing.business_hours) == 2  # the base's, untouched by the arm
    repeat = arm.policy.plans[arm.policy.segments.index("repeat")]
    assert repeat.segments == ("repeat",) and repeat.line == line_of(TEXT, "plan for repeat", 1)
    assert [c.value for c in repeat.steps[0].channels] == ["whatsapp", "email"]
    assert repeat.give_up_after == "P14D"
    assert policy.timing.cadence is not None and policy.timing.cadence.per_day == 1  # the base is unchanged


def test_each_statement_replaces_what_the_rules_say() -> None:
    text = with_experiment(
        '  experiment "x"\n    arm a 50%\n    arm b 50%\n'
        '      business hours in "US-FL" mon-fri 10:00-16:00\n'
        "      quiet hours 22:00-07:00\n"
        "      plan otherwise\n        step after 3h via sms template \"reminder_short\"\n      end\n"
        "    end\n  end"
    )
    arm = compile_policy(text).experiment.arms[1].policy  # type: ignore[union-attr]
    assert arm is not None
    business = {r.regions: (r.windows[0].start.hour, r.windows[0].end.hour) for r in arm.timing.business_hours}
    assert business == {(): (9, 18), ("US-FL",): (10, 16)}  # the region's line replaced, the default kept
    assert [(q.regions, q.start.hour) for q in arm.timing.quiet_hours] == [((), 22)]  # added: the base had none
    fallback = next(p for p in arm.plans if not p.segments)
    assert fallback.steps[0].template == "reminder_short" and len(arm.plans) == 2


def test_the_salt_is_the_definition_without_the_arms_statements() -> None:
    def salt(text: str) -> str:
        experiment = compile_policy(text).experiment
        assert experiment is not None
        return experiment.salt

    original = salt(TEXT)
    assert len(original) <= 255
    assert salt(TEXT.replace("cadence max 2 per day", "cadence max 3 per day")) == original
    assert salt(TEXT.replace("arm control 50%", "arm control 50.0%")) == original
    assert salt(TEXT.replace("# nothing", "")) == original
    assert salt(TEXT.replace("arm control 50%", "arm control 40%").replace("first 50%", "first 60%")) != original
    assert salt(TEXT.replace("whatsapp_first", "whatsapp_early")) != original
    assert salt(TEXT.replace('"whatsapp first"', '"whatsapp before email"')) != original


def test_a_policy_without_an_experiment_compiles_without_one() -> None:
    assert compile_policy(BASE + "end\n").experiment is None


# --- formatting --------------------------------------------------------------------------------------------------


def test_the_formatter_lays_the_block_out_and_keeps_its_comments() -> None:
    messy = BASE + (
        '\n experiment   "whatsapp first"   # a test\n'
        "        arm control 50%\n"
        "   arm whatsapp_first   50%\n"
        "   # only repeat customers\n"
        "  plan for repeat\n"
        '  step after 1h via whatsapp,email template "reminder_short"\n'
        "  end\n"
        "   end\n"
        "    guardrail opt_out 1%\n"
        "end\nend\n"
    )
    formatted = format_policy(messy)
    assert formatted.endswith(
        '  experiment "whatsapp first"  # a test\n'
        "    arm control 50%\n"
        "    arm whatsapp_first 50%\n"
        "      # only repeat customers\n"
        "      plan for repeat\n"
        '        step after 1h via whatsapp, email template "reminder_short"\n'
        "      end\n"
        "    end\n"
        "    guardrail opt_out 1%\n"
        "  end\n"
        "end\n"
    )
    assert parse(formatted) == parse(messy) and format_policy(formatted) == formatted


def test_the_valid_example_is_already_formatted() -> None:
    text = (VALID / "experiment.policy").read_text(encoding="utf-8")
    assert format_policy(text) == text


# --- promotion ------------------------------------------------------------------------------------------------------


def test_promoting_an_arm_writes_its_statements_in_place_of_the_base_s() -> None:
    promoted = promote_arm(TEXT, "whatsapp_first")
    assert promoted == format_policy(
        BASE.replace("cadence max 1 per day", "cadence max 2 per day").replace(
            '    step after 1h via email template "payment_failed"\n',
            '    step after 1h via whatsapp, email template "reminder_short"\n    give up after 14d\n',
        )
        + "end\n"
    )
    compile_policy(promoted, known_templates=TEMPLATES)


def test_promoting_the_control_drops_the_experiment() -> None:
    assert promote_arm(TEXT, "control") == format_policy(BASE + "end\n")


def test_promoting_keeps_the_comments_outside_the_experiment() -> None:
    text = (VALID / "experiment.policy").read_text(encoding="utf-8")
    promoted = promote_arm(text, "whatsapp_first")
    assert promoted.startswith("# An experiment: every statement an arm may write, once.\npolicy")
    assert "experiment \"" not in promoted and "  arm " not in promoted and "WhatsApp before" not in promoted
    assert "  cadence max 2 per day\n" in promoted and "max 1 per day" not in promoted
    everything = promote_arm(text, "everything")
    compile_policy(everything, known_templates=TEMPLATES)
    assert '  business hours mon-sat 08:00-20:00\n  business hours in "US-FL" mon-fri 09:00-17:00\n' in everything
    assert "  quiet hours 21:00-08:00\n" in everything and '  quiet hours in "US-FL" 20:00-09:00\n' in everything
    assert "  skip holidays, weekends\n" in everything and "otherwise offer partial_payment" in everything


@pytest.mark.parametrize(
    ("text", "arm", "message"),
    [
        (TEXT, "whatsap_first", 'experiment "whatsapp first" has no arm "whatsap_first" — did you mean '
                                '"whatsapp_first"?'),
        (TEXT, "email", 'experiment "whatsapp first" has no arm "email": its arms are control and whatsapp_first'),
        (BASE + "end\n", "control", "this policy runs no experiment: there is no arm to promote"),
    ],
)
def test_promoting_an_unknown_arm_says_which_there_are(text: str, arm: str, message: str) -> None:
    with pytest.raises(PolicyValidationError) as raised:
        promote_arm(text, arm)
    assert raised.value.message == message


def test_an_invalid_policy_is_not_promoted() -> None:
    with pytest.raises(PolicyError):
        promote_arm(TEXT.replace("arm control 50%", "arm control 40%"), "control")
