"""The `policy` command group, as DESIGN.md's CLI contract describes it (run without an app or a database)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.cli.policy import policy_cli
from tests.dsl.helpers import EXAMPLES

STANDARD = EXAMPLES / "standard.policy"
FACTS = Path(__file__).parent / "facts-sample.jsonl"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(policy_cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_passes_on_the_standard_example() -> None:
    code, _, err = run("check", str(STANDARD))
    assert code == 0, err


def test_check_reports_a_misspelt_field_as_file_line_col(tmp_path: Path) -> None:
    lines = STANDARD.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if "transaction.amount" in line)
    lines[number - 1] = lines[number - 1].replace("transaction.amount", "transaction.amountqq", 1)
    typo = tmp_path / "typo.policy"
    typo.write_text("".join(lines))
    code, _, err = run("check", str(typo))
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith(f"{typo}:{number}:")
    assert 'unknown fact "transaction.amountqq" — did you mean "transaction.amount"?' in first
    assert "Traceback" not in err


def test_check_prints_warnings_but_passes(tmp_path: Path) -> None:
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"base": "USD", "rates": {"EUR": "1.08"}}))
    policy = tmp_path / "gbp.policy"
    policy.write_text(STANDARD.read_text().replace("500 USD", "500 GBP"))
    code, _, err = run("check", str(policy), "--fx-rates", str(rates))
    assert code == 0
    assert "warning: there is no exchange rate for GBP" in err


def test_check_a_syntax_error_shows_the_line_and_a_caret(tmp_path: Path) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text('policy "p"\n  holdout 5\nend\n')
    code, _, err = run("check", str(bad))
    assert code == 1
    assert err.splitlines()[:3] == [
        f'{bad}:2:11: expected a percentage like 50%, but found "5"',
        "      holdout 5",
        "              ^",
    ]


def test_check_a_missing_file_is_a_plain_error() -> None:
    code, _, err = run("check", "/nonexistent/x.policy")
    assert code != 0 and "Traceback" not in err


def test_simulate_prints_one_plan_per_facts_line() -> None:
    code, out, err = run("simulate", str(STANDARD), "--facts", str(FACTS), "--version", "3")
    assert code == 0, err
    plans = [json.loads(line) for line in out.splitlines()]
    assert [p["transaction"] for p in plans] == ["s-t1", "s-t2"]
    assert all(p["policy"] == "standard" and p["version"] == 3 for p in plans)
    assert "explain" not in plans[0]


def test_simulate_explain_shows_conditions() -> None:
    code, out, _ = run("simulate", str(STANDARD), "--facts", str(FACTS), "--explain")
    assert code == 0
    plan = json.loads(out.splitlines()[0])
    assert {
        "line": 6,
        "kind": "segment",
        "condition": "customer.successful_payments >= 1",
        "value": True,
    } in (plan["explain"])


def test_simulate_a_bad_facts_line_keeps_the_others(tmp_path: Path) -> None:
    facts = tmp_path / "f.jsonl"
    facts.write_text(FACTS.read_text().splitlines()[0] + "\n{not json\n[1, 2]\n")
    code, out, err = run("simulate", str(STANDARD), "--facts", str(facts))
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["transaction"] == "s-t1"
    assert lines[1]["line"] == 2 and "error" in lines[1]
    assert lines[2]["line"] == 3 and "error" in lines[2]
    assert f"{facts}:2:" in err and "Traceback" not in err


def test_fmt_prints_the_canonical_form(tmp_path: Path) -> None:
    messy = tmp_path / "messy.policy"
    messy.write_text(
        'policy "p"\nholdout   5%\n   plan otherwise\nstep after 1d via email template "x"\nend\nend'
    )
    code, out, _ = run("fmt", str(messy))
    assert code == 0
    assert (
        out == 'policy "p"\n  holdout 5%\n\n  plan otherwise\n'
        '    step after 1d via email template "x"\n  end\nend\n'
    )
    code, _, _ = run("fmt", str(messy), "--write")
    assert code == 0 and messy.read_text() == out


def test_check_refuses_a_policy_over_the_size_cap_with_a_position(tmp_path: Path) -> None:
    from dsl.limits import MAX_POLICY_CHARS

    huge = tmp_path / "huge.policy"
    huge.write_text(STANDARD.read_text() + "#" * (2 * 1024 * 1024))
    code, _, err = run("check", str(huge))
    assert code == 1
    assert err.splitlines()[0].startswith(f"{huge}:") and f"at most {MAX_POLICY_CHARS:,}" in err
    assert "Traceback" not in err


def test_check_reports_a_deeply_nested_condition(tmp_path: Path) -> None:
    deep = tmp_path / "deep.policy"
    deep.write_text(STANDARD.read_text().replace("customer.vip", "(" * 1000 + "customer.vip" + ")" * 1000, 1))
    code, _, err = run("check", str(deep))
    assert code == 1 and "nested too deeply" in err and "Traceback" not in err
