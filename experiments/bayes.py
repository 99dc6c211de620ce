"""The Bayesian read: the probability that a variant beats control, and the expected loss of choosing it.

- *chance to beat control*: the posterior probability that the variant's true value is better than control's;
- *risk* (expected loss): the posterior mean of how much worse the variant is than control, counting 0 where it is
  better: what choosing it costs on average if it is in fact the worse one (in the metric's units: rate points, or
  minor units per case). ``risk_control`` is the same for keeping control.

Recovery rates: each arm's rate has a Beta posterior, ``Beta(a + recovered, b + not recovered)`` from a uniform
``Beta(1, 1)`` prior; the probabilities are Monte Carlo means over draws from numpy's seeded generator (the same seed
gives the same read), all variants against the same control draws. Means (amount per case, time to recover): the
difference's posterior is taken as normal, ``N(effect, V)`` (a flat prior and the central limit theorem, as
GrowthBook's Bayesian engine does for means), so ``chance = Phi(effect / sqrt(V))`` and, for ``D`` ~ N(m, s**2),
``E[max(-D, 0)] = s phi(m / s) - m Phi(-m / s)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm  # type: ignore[import-untyped]

from experiments.arms import ArmData, ExperimentError
from experiments.estimates import Difference

DRAWS = 100_000


@dataclass(frozen=True)
class BayesRead:
    """``chance_to_beat``: P(variant better than control); ``risk``: expected loss of choosing the variant;
    ``risk_control``: expected loss of keeping control."""

    chance_to_beat: float
    risk: float
    risk_control: float


def beta_chance_to_beat(control: ArmData, variants: Sequence[ArmData], *, seed: int = 0, draws: int = DRAWS,
                        prior: tuple[float, float] = (1.0, 1.0)) -> dict[str, BayesRead]:
    """Each variant's recovery rate against control's, from Beta posteriors (higher is better)."""
    if draws < 1000:
        raise ExperimentError(f"at least 1,000 draws are needed, got {draws}")
    a, b = prior
    if not (a > 0 and b > 0):
        raise ExperimentError(f"a Beta prior needs positive parameters, got {prior!r}")
    rng = np.random.default_rng(seed)

    def posterior(arm: ArmData) -> np.ndarray:
        return rng.beta(a + arm.conversions, b + arm.units - arm.conversions, draws)

    base = posterior(control)
    reads = {}
    for variant in variants:
        drawn = posterior(variant)
        gain = drawn - base
        reads[variant.name] = BayesRead(float(np.mean(gain > 0)), float(np.mean(np.maximum(-gain, 0.0))),
                                        float(np.mean(np.maximum(gain, 0.0))))
    return reads


def normal_chance_to_beat(diff: Difference, higher_is_better: bool = True) -> BayesRead:
    """A difference of means read with a normal posterior ``N(effect, variance)``."""
    m = diff.effect if higher_is_better else -diff.effect  # the gain from choosing the variant
    if math.isinf(diff.variance) or math.isnan(diff.variance):
        return BayesRead(0.5, math.inf, math.inf)
    s = math.sqrt(diff.variance)
    if s == 0:
        return BayesRead(1.0 if m > 0 else 0.0 if m < 0 else 0.5, max(-m, 0.0), max(m, 0.0))
    z = m / s
    risk = s * float(norm.pdf(z)) - m * float(norm.cdf(-z))  # E[max(-gain, 0)]
    risk_control = s * float(norm.pdf(z)) + m * float(norm.cdf(z))  # E[max(gain, 0)]
    return BayesRead(float(norm.cdf(z)), risk, risk_control)
