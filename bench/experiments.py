"""The experiment statistics (issue 18) in heavy simulation: the four done-when figures at full scale, each printed
against its target, and the sweeps around them (power over several effects, SRM over splits and volumes, coverage
set by set). Seeded: every run prints the same figures.

    .venv/bin/python bench/experiments.py [--aa 2000] [--power-runs 1000] [--srm-runs 4000] [--lift-runs 1000]
                                          [--seed 1]

Targets: A/A read daily for 60 days is declared significant in at most 5% of experiments (recovery rate, amount per
case, the family of three variants, the four guardrails); at the power calculator's sample size a planted lift is
detected with at least 80% power (5 points, and each effect of the sweep); a 52/48 split is flagged (p < 0.01) in
at least 99% of reads of 20,000 cases and a fair split is not flagged in at least 99% (less two standard errors);
the holdout lift's 95% interval contains the planted truth in at least 93% of runs (rate and amount). Lines marked
"context" have no target. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.stats import chi2  # noqa: E402

from experiments.arms import ArmData  # noqa: E402
from experiments.corrections import holm_significant  # noqa: E402
from experiments.estimates import Estimate, amount_estimate, difference, rate_estimate  # noqa: E402
from experiments.guardrails import Guardrail, GuardrailMetric, check_guardrails  # noqa: E402
from experiments.lift import holdout_lift  # noqa: E402
from experiments.power import plan_for_duration, plan_for_effect  # noqa: E402
from experiments.sequential import always_valid_interval  # noqa: E402
from experiments.srm import always_valid_srm_p_value, check_sample_ratio  # noqa: E402
from tests.experiments.world import Counts, Money, World, cases, daily_counts  # noqa: E402

DAILY, DAYS, BASELINE = 150, 60, 0.30
TWO = {"control": 1, "B": 1}
MISSES: list[str] = []


def report(figure: str, value: float, target: str = "", ok: bool | None = None, unit: str = "%") -> None:
    """One line: the figure, its value, its target, and OK or MISS (a context line has neither)."""
    if ok is False:
        MISSES.append(figure)
    shown = f"{value:>9.2%}" if unit == "%" else f"{value:>9,.0f}"
    print(f"  {figure:<82}{shown}   {target:<16}{'' if ok is None else 'OK' if ok else 'MISS'}")


def significant_share(counts: Counts, planned: float, estimate: Callable[[ArmData], Estimate]) -> float:
    """The share of runs whose always-valid test of B against control, read at every daily look, is significant at
    some look."""
    runs, days = counts.units.shape[:2]
    hits = 0
    for run in range(runs):
        for day in range(days):
            control, variant = counts.arms_at(run, day)[:2]
            if always_valid_interval(difference(estimate(control), estimate(variant)), planned).significant:
                hits += 1
                break
    return hits / runs


def bench_aa(runs: int, seed: int) -> None:
    print(f"\n1. A/A: {runs:,} experiments of {DAILY} cases a day, read daily for {DAYS} days")
    planned = plan_for_duration(DAILY, DAYS, BASELINE, TWO, "control").units
    counts = daily_counts(World({"control": BASELINE, "B": BASELINE}, DAILY, DAYS), runs, seed, money=Money())
    rate = significant_share(counts, planned, rate_estimate)
    report("recovery rate: declared significant at some look", rate, "<= 5%", rate <= 0.05)
    amount = significant_share(counts, planned, amount_estimate)
    report("amount per case: declared significant at some look", amount, "<= 5%", amount <= 0.05)
    n = counts.units.astype(float)
    p = counts.conversions / np.maximum(n, 1)
    variance = (p * (1 - p) / np.maximum(n, 1)).sum(axis=2)
    z = np.abs(p[..., 1] - p[..., 0]) / np.sqrt(np.where(variance > 0, variance, np.inf))
    report("context: a fixed-horizon z-test (1.96) read once, at day 60", float(np.mean(z[:, -1] > 1.96)))
    report("context: the same z-test read daily, stopped at the first significant look",
           float(np.mean((z > 1.96).any(axis=1))))

    family_runs = max(runs // 2, 200)
    family = daily_counts(World({name: BASELINE for name in ("control", "B", "C", "D")}, DAILY * 2, DAYS),
                          family_runs, seed + 1)
    hits = 0
    for run in range(family_runs):
        for day in range(DAYS):
            control, *variants = family.arms_at(run, day)
            p_values = [always_valid_interval(difference(rate_estimate(control), rate_estimate(v)), planned).p_value
                        for v in variants]
            if any(holm_significant(p_values, 0.05)):
                hits += 1
                break
    report(f"A/A/A/A, {family_runs:,} runs: some variant significant (Holm)", hits / family_runs, "<= 5%",
           hits / family_runs <= 0.05)

    guardrails = [Guardrail(GuardrailMetric.OPT_OUT, 0.0025), Guardrail(GuardrailMetric.STOP, 0.0025),
                  Guardrail(GuardrailMetric.COMPLAINT, 0.001), Guardrail(GuardrailMetric.RETRY_FEE, 0.005)]
    rates = {"opt_out": 0.01, "stop": 0.005, "complaint": 0.001, "retry_fee": 0.02}
    guard_runs = max(runs // 4, 200)
    world = World({"control": BASELINE, "B": BASELINE}, DAILY, DAYS,
                  events={m: {"control": r, "B": r} for m, r in rates.items()})
    counts = daily_counts(world, guard_runs, seed + 2)
    stops = 0
    for run in range(guard_runs):
        for day in range(DAYS):
            checks = check_guardrails(counts.arms_at(run, day), "control", guardrails, TWO, DAILY * DAYS)
            if any(c.stop for c in checks):
                stops += 1
                break
    report(f"A/A, {guard_runs:,} runs: stopped by one of four guardrails", stops / guard_runs, "<= 5%",
           stops / guard_runs <= 0.05)


def bench_power(runs: int, seed: int) -> None:
    print(f"\n2. Power at the calculator's sample size: {runs:,} runs each, baseline {BASELINE:.0%}, "
          f"{DAILY} cases a day, read daily")
    for i, effect in enumerate((0.02, 0.03, 0.05, 0.08)):
        plan = plan_for_effect(DAILY, BASELINE, effect, TWO, "control")
        world = World({"control": BASELINE, "B": BASELINE + effect}, DAILY, plan.days + 4, cap=plan.units)
        power = significant_share(daily_counts(world, runs, seed + i), plan.units, rate_estimate)
        report(f"+{effect * 100:.0f} points: {plan.units:,} cases ({plan.days} days; fixed horizon "
               f"{plan.fixed_horizon_units:,}), detected", power, ">= 80%", power >= 0.80)
        if effect == 0.05:
            fixed = World({"control": BASELINE, "B": BASELINE + effect}, DAILY, plan.days + 4,
                          cap=plan.fixed_horizon_units)
            short = significant_share(daily_counts(fixed, runs, seed + 10), plan.fixed_horizon_units, rate_estimate)
            report("context: +5 points at the fixed-horizon size, same sequential test", short)
    weights = {"control": 30, "B": 30, "C": 30, "holdout": 10}
    plan = plan_for_effect(DAILY, BASELINE, 0.05, weights, "control", holdout="holdout")
    rates = {"control": BASELINE, "B": BASELINE + 0.05, "C": BASELINE, "holdout": 0.12}
    counts = daily_counts(World(rates, DAILY, plan.days + 4, split=weights, cap=plan.units), runs, seed + 20)
    found = 0
    for run in range(runs):
        for day in range(counts.units.shape[1]):
            control, b, c, _ = counts.arms_at(run, day)
            pair = plan.units * 0.6
            p_values = [always_valid_interval(difference(rate_estimate(control), rate_estimate(v)), pair,
                                              0.05).p_value for v in (b, c)]
            if holm_significant(p_values, 0.05)[0]:
                found += 1
                break
    report(f"+5 points, 2 variants and a 10% holdout: {plan.units:,} cases ({plan.days} days), B found (Holm)",
           found / runs, ">= 80%", found / runs >= 0.80)


def bench_srm(runs: int, seed: int) -> None:
    print(f"\n3. Sample-ratio mismatch: {runs:,} reads per line; flagged = chi-square p < 0.01 (warn or alert)")
    rng = np.random.default_rng(seed)
    for share in (0.50, 0.51, 0.52, 0.55):
        for n in (5_000, 10_000, 20_000, 40_000):
            counts = rng.multinomial(n, [share, 1 - share], size=runs)
            p = np.array([check_sample_ratio({"control": int(a), "B": int(b)}, TWO).p_value for a, b in counts])
            if share == 0.5 and n == 20_000:
                error = math.sqrt(0.01 * 0.99 / runs)
                report(f"{share:.0%}/{1 - share:.0%} at {n:,} cases: not flagged", float(np.mean(p >= 0.01)),
                       f">= {0.99 - 2 * error:.2%}", float(np.mean(p >= 0.01)) >= 0.99 - 2 * error)
            elif share == 0.52 and n == 20_000:
                report(f"{share:.0%}/{1 - share:.0%} at {n:,} cases: flagged", float(np.mean(p < 0.01)), ">= 99%",
                       float(np.mean(p < 0.01)) >= 0.99)
            else:
                report(f"context: {share:.0%}/{1 - share:.0%} at {n:,} cases: flagged", float(np.mean(p < 0.01)))
    daily_runs = max(runs // 8, 200)
    for share in (0.5, 0.52):
        world = World({"control": BASELINE, "B": BASELINE}, 330, DAYS, split={"control": share, "B": 1 - share})
        counts = daily_counts(world, daily_runs, seed + 1)
        units = counts.units.astype(float)
        expected = units.sum(axis=2, keepdims=True) / 2
        statistic = ((units - expected) ** 2 / np.maximum(expected, 1)).sum(axis=2)
        warned = float(np.mean((chi2.sf(statistic, 1) < 0.01).any(axis=1)))
        alerted = float(np.mean((chi2.sf(statistic, 1) < 0.001).any(axis=1)))
        always = float(np.mean([
            min(always_valid_srm_p_value({"control": int(u[0]), "B": int(u[1])}, {"control": 0.5, "B": 0.5})
                for u in counts.units[run]) < 0.01 for run in range(daily_runs)]))
        label = f"context: {share:.0%}/{1 - share:.0%}, 330 a day read daily for 60 days ({daily_runs:,} runs)"
        print(f"  {label}")
        report("    chi-square p < 0.01 at some read", warned)
        report("    chi-square p < 0.001 at some read", alerted)
        report("    always-valid p < 0.01 at some read", always)


def bench_lift(runs: int, seed: int) -> None:
    print(f"\n4. Holdout lift: {runs:,} reads of 10,000 cases, a tenth held out; recovery 30% with Recoup, 12% "
          "without")
    rng = np.random.default_rng(seed)
    money = Money()
    truth = 0.18
    rate_hits, amount_hits = [], []
    for _ in range(runs):
        treated, holdout = cases({"recoup": 0.30, "holdout": 0.12}, {"recoup": 90, "holdout": 10}, 10_000, rng,
                                 money)
        lift = holdout_lift(treated, holdout)
        rate_hits.append(lift.rate.contains(truth))
        amount_hits.append(lift.amount_per_case.contains(truth * money.mean_due))
    rate, amount = float(np.mean(rate_hits)), float(np.mean(amount_hits))
    report("rate (Newcombe): 95% interval contains the planted lift", rate, ">= 93%", rate >= 0.93)
    report("amount per case (Welch): 95% interval contains the planted lift", amount, ">= 93%", amount >= 0.93)
    sets = len(rate_hits) // 200
    if sets:
        per_set = [float(np.mean(rate_hits[i * 200:(i + 1) * 200])) for i in range(sets)]
        print(f"  context: the rate's coverage in {sets} sets of 200 runs: "
              + ", ".join(f"{c:.1%}" for c in per_set)
              + f" ({sum(c >= 0.93 for c in per_set)} of {sets} at >= 93%)")
        per_set = [float(np.mean(amount_hits[i * 200:(i + 1) * 200])) for i in range(sets)]
        print(f"  context: the amount's coverage in {sets} sets of 200 runs: "
              + ", ".join(f"{c:.1%}" for c in per_set)
              + f" ({sum(c >= 0.93 for c in per_set)} of {sets} at >= 93%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aa", type=int, default=2000, help="A/A experiments (default 2,000)")
    parser.add_argument("--power-runs", type=int, default=1000, help="runs per effect size (default 1,000)")
    parser.add_argument("--srm-runs", type=int, default=4000, help="reads per split and volume (default 4,000)")
    parser.add_argument("--lift-runs", type=int, default=1000, help="holdout reads (default 1,000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{'':<84}{'measured':>9}   {'target':<16}")
    bench_aa(args.aa, args.seed)
    bench_power(args.power_runs, args.seed + 100)
    bench_srm(args.srm_runs, args.seed + 200)
    bench_lift(args.lift_runs, args.seed + 300)
    outcome = f"MISSED: {', '.join(MISSES)}" if MISSES else "every target met"
    print(f"\n{time.perf_counter() - started:.0f} s; {outcome}")
    return 1 if MISSES else 0


if __name__ == "__main__":
    sys.exit(main())
