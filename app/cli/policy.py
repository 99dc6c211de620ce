"""``flask policy check|simulate|fmt``: the policy language from the command line. No database needed.

flask --app wsgi policy check examples/policies/standard.policy
flask --app wsgi policy simulate examples/policies/standard.policy --facts facts.jsonl [--explain]
flask --app wsgi policy fmt examples/policies/standard.policy [--write]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from dsl import FxRates, PolicyError, check, compile_policy, format_policy
from rules.money import MoneyError
from rules.planner import FactsError, plan

policy_cli = AppGroup("policy", help="Check, simulate and format recovery policies.")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


def _rates(path: str | None) -> FxRates | None:
    if not path:
        return None
    try:
        return FxRates.from_mapping(json.loads(_read(path)))
    except (ValueError, MoneyError, AttributeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def _templates(names: str | None) -> list[str] | None:
    return [n.strip() for n in names.split(",") if n.strip()] if names else None


@policy_cli.command("check", with_appcontext=False)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--fx-rates", "fx_rates", type=click.Path(dir_okay=False), help='JSON: {"base": "USD", "rates": {...}}'
)
@click.option(
    "--templates", help="Comma-separated template names that exist, to check template names against."
)
def check_command(file: str, fx_rates: str | None, templates: str | None) -> None:
    """Exit 0 when FILE is a valid policy; else print each error as FILE:LINE:COL: message and exit 1."""
    diagnostics = check(_read(file), fx_rates=_rates(fx_rates), known_templates=_templates(templates))
    for diagnostic in diagnostics:
        click.echo(diagnostic.render(file), err=True)
    errors = sum(1 for d in diagnostics if d.is_error)
    if errors:
        click.echo(f"{errors} error{'s' if errors != 1 else ''} in {file}", err=True)
        sys.exit(1)


@policy_cli.command("simulate", with_appcontext=False)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--facts", "facts_path", required=True, type=click.Path(dir_okay=False), help="Facts, one JSON per line."
)
@click.option("--explain", is_flag=True, help="Show which conditions were true or false for each record.")
@click.option("--version", "version", type=int, default=None, help="Version number to put in the plans.")
@click.option(
    "--fx-rates", "fx_rates", type=click.Path(dir_okay=False), help='JSON: {"base": "USD", "rates": {...}}'
)
def simulate_command(
    file: str, facts_path: str, explain: bool, version: int | None, fx_rates: str | None
) -> None:
    """Print one JSON plan per line of FACTS (a line that cannot be planned prints {"error": ...})."""
    try:
        policy = compile_policy(_read(file), version=version, fx_rates=_rates(fx_rates))
    except PolicyError as exc:
        click.echo(exc.render(file), err=True)
        sys.exit(1)
    failed = 0
    with open(facts_path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            out: dict[str, Any]
            try:
                out = plan(policy, json.loads(line), version=version, explain=explain).to_json()
            except (ValueError, FactsError) as exc:  # json.JSONDecodeError is a ValueError
                failed += 1
                click.echo(f"{facts_path}:{number}: {exc}", err=True)
                out = {"error": str(exc), "line": number}
            except Exception as exc:  # noqa: BLE001 - one bad record must not hide the others' plans
                failed += 1
                click.echo(
                    f"{facts_path}:{number}: could not plan this record ({type(exc).__name__}: {exc})",
                    err=True,
                )
                out = {"error": f"could not plan this record: {exc}", "line": number}
            click.echo(json.dumps(out, ensure_ascii=False))
    if failed:
        sys.exit(1)


@policy_cli.command("fmt", with_appcontext=False)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--write", is_flag=True, help="Rewrite FILE in place instead of printing.")
def fmt_command(file: str, write: bool) -> None:
    """Print FILE in the canonical layout (comments kept), so that versions diff cleanly."""
    try:
        text = format_policy(_read(file))
    except PolicyError as exc:
        click.echo(exc.render(file), err=True)
        sys.exit(1)
    if write:
        Path(file).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
