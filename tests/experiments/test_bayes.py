"""The Bayesian read: identical arms give about even odds, a clear winner about certainty, and the normal read's
closed forms match their integrals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import beta, norm

from experiments.arms import ArmData, ExperimentError
from experiments.bayes import beta_chance_to_beat, normal_chance_to_beat
from experiments.estimates import Difference


def test_identical_arms_are_even_odds() -> None:
    control, b = ArmData("control", 1000, 300), ArmData("B", 1000, 300)
    read = beta_chance_to_beat(control, [b], seed=1)["B"]
    assert read.chance_to_beat == pytest.approx(0.5, abs=0.01)
    assert read.risk == pytest.approx(read.risk_control, rel=0.05)


def test_the_chance_matches_the_exact_integral() -> None:
    """P(p_B > p_A) = integral of f_B(x) F_A(x) dx for Beta posteriors."""
    control, b = ArmData("control", 400, 120), ArmData("B", 400, 140)
    post_a, post_b = beta(1 + 120, 1 + 280), beta(1 + 140, 1 + 260)
    exact, _ = integrate.quad(lambda x: post_b.pdf(x) * post_a.cdf(x), 0, 1)
    read = beta_chance_to_beat(control, [b], seed=2)["B"]
    assert read.chance_to_beat == pytest.approx(exact, abs=0.005)
    # the risk of choosing B: E[max(p_A - p_B, 0)], by Monte Carlo with another generator
    rng = np.random.default_rng(99)
    a_draws, b_draws = post_a.rvs(400_000, random_state=rng), post_b.rvs(400_000, random_state=rng)
    assert read.risk == pytest.approx(np.maximum(a_draws - b_draws, 0).mean(), rel=0.05)


def test_a_clear_winner_and_several_variants() -> None:
    control = ArmData("control", 5000, 1500)
    reads = beta_chance_to_beat(control, [ArmData("B", 5000, 1750), ArmData("C", 5000, 1400)], seed=3)
    assert reads["B"].chance_to_beat > 0.999 and reads["B"].risk < 1e-5
    se = np.sqrt(0.3 * 0.7 / 5000 + 0.28 * 0.72 / 5000)  # 2 points behind: about 2.2 standard errors
    assert reads["C"].chance_to_beat == pytest.approx(norm.cdf(-0.02 / se), abs=0.003)
    assert reads["C"].risk == pytest.approx(0.02, abs=0.001)
    again = beta_chance_to_beat(control, [ArmData("B", 5000, 1750), ArmData("C", 5000, 1400)], seed=3)
    assert again == reads  # the same seed, the same read


def test_the_normal_read_closed_forms() -> None:
    diff = Difference(control=1000.0, variant=1030.0, variance=400.0, units=2000)
    read = normal_chance_to_beat(diff)
    assert read.chance_to_beat == pytest.approx(norm.cdf(30 / 20))
    loss, _ = integrate.quad(lambda d: max(-d, 0) * norm.pdf(d, 30, 20), -200, 200, points=[0])
    assert read.risk == pytest.approx(loss, rel=1e-6)
    gain, _ = integrate.quad(lambda d: max(d, 0) * norm.pdf(d, 30, 20), -200, 200, points=[0])
    assert read.risk_control == pytest.approx(gain, rel=1e-6)
    # lower is better (time to recover): a rise is a loss
    slower = normal_chance_to_beat(diff, higher_is_better=False)
    assert slower.chance_to_beat == pytest.approx(1 - read.chance_to_beat)
    assert slower.risk == pytest.approx(read.risk_control)


def test_inputs_are_checked() -> None:
    with pytest.raises(ExperimentError, match="1,000 draws"):
        beta_chance_to_beat(ArmData("control", 10), [ArmData("B", 10)], draws=10)
    with pytest.raises(ExperimentError, match="positive parameters"):
        beta_chance_to_beat(ArmData("control", 10), [ArmData("B", 10)], prior=(0, 1))
