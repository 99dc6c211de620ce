"""One read of a running experiment, everything together: the sample-ratio check, the comparisons per metric with
their corrections, the guardrails' stop reasons and the holdout lift."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from experiments.arms import ArmData, ExperimentError
from experiments.guardrails import Guardrail, GuardrailMetric
from experiments.readout import Metric, read_experiment
from experiments.srm import SrmLevel
from tests.experiments.world import cases

WEIGHTS = {"control": 30, "B": 30, "C": 30, "holdout": 10}
RATES = {"control": 0.30, "B": 0.36, "C": 0.30, "holdout": 0.12}


@pytest.fixture(scope="module")
def arms() -> list[ArmData]:
    found = cases(RATES, WEIGHTS, 20_000, np.random.default_rng(71))
    # C triples its opt-outs: 1% -> 3%
    opt_outs = {"control": 60, "B": 62, "C": 180, "holdout": 0}
    return [replace(a, events={"opt_out": opt_outs[a.name]}) for a in found]


def test_a_read_with_a_winner_a_harmful_variant_and_a_holdout(arms: list[ArmData]) -> None:
    readout = read_experiment(arms, "control", WEIGHTS, planned_units=20_000, holdout="holdout", cuped=True,
                              guardrails=[Guardrail(GuardrailMetric.OPT_OUT, 0.005)], draws=20_000)
    assert readout.sample_ratio.level is SrmLevel.OK
    assert readout.alpha_per_comparison == pytest.approx(0.025)  # two variants; the holdout is not one
    b = readout.comparison(Metric.RECOVERY_RATE, "B")
    assert b.better and b.interval.lower > 0 and b.bayes.chance_to_beat > 0.99
    assert b.difference.effect == pytest.approx(0.06, abs=0.02)
    assert readout.comparison(Metric.AMOUNT_PER_CASE, "B").difference.effect > 0
    c = readout.comparison(Metric.RECOVERY_RATE, "C")
    assert not c.significant
    assert readout.comparison(Metric.TIME_TO_RECOVER, "B").interval.alpha == pytest.approx(0.025)
    assert readout.cuped_theta is not None and readout.cuped_theta > 0
    assert len(readout.stop_reasons) == 1 and readout.stop_reasons[0].startswith("stop: variant C harms opt_out")
    assert readout.lift is not None and readout.lift.rate.lower > 0.1  # Recoup's arms against the holdout
    with pytest.raises(KeyError):
        readout.comparison(Metric.RECOVERY_RATE, "holdout")


def test_an_srm_alert_is_a_stop_reason(arms: list[ArmData]) -> None:
    skewed = {"control": 40, "B": 25, "C": 25, "holdout": 10}
    readout = read_experiment(arms, "control", skewed, planned_units=20_000, holdout="holdout", draws=2_000)
    assert readout.sample_ratio.level is SrmLevel.ALERT
    assert readout.stop_reasons[0].startswith("sample-ratio mismatch")


def test_a_read_is_the_same_for_the_same_seed(arms: list[ArmData]) -> None:
    first = read_experiment(arms, "control", WEIGHTS, planned_units=20_000, holdout="holdout", seed=3, draws=5_000)
    again = read_experiment(arms, "control", WEIGHTS, planned_units=20_000, holdout="holdout", seed=3, draws=5_000)
    assert first == again


def test_bad_reads_are_refused(arms: list[ArmData]) -> None:
    with pytest.raises(ExperimentError, match="holdout 'control' must be an arm other than control"):
        read_experiment(arms, "control", WEIGHTS, 20_000, holdout="control")
    with pytest.raises(ExperimentError, match=r"unknown arms \['D'\]"):
        read_experiment(arms, "control", {**WEIGHTS, "D": 10}, 20_000, holdout="holdout")
    with pytest.raises(ExperimentError, match="planned sample size must be positive"):
        read_experiment(arms, "control", WEIGHTS, 0, holdout="holdout")
    with pytest.raises(ExperimentError, match="no variant"):
        read_experiment([arms[0], arms[3]], "control", {"control": 1, "holdout": 1}, 1000, holdout="holdout")
