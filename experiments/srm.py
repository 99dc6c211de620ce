"""Sample-ratio mismatch (SRM): are the cases split between the arms as planned?

Checked on every read with Pearson's chi-square goodness-of-fit test (``scipy.stats.chisquare``) of the cases per
arm against the planned shares. An SRM means the assignment or the counting is broken (a variant that loses cases on
the way, a bot filter, a bug): the results cannot be trusted until it is explained. Levels, as issue 18 sets them:
``warn`` below p 0.01, ``alert`` below p 0.001, else ``ok``.

One read of a fair split is flagged (warn or alert) with probability 0.01. Read every day, the chi-square p-value
of a fair split dips below 0.01 at some read in about one experiment in ten over 60 days (below 0.001 in about one
in seventy; bench/experiments.py measures both). Beside it each check gives an *always-valid* p-value that may be
read every day: the Dirichlet-multinomial test of Lindon and Malek ("Anytime-valid inference for multinomial count
data", NeurIPS 2022): the Bayes factor of a Dirichlet mixture over the shares (centred on the planned ones,
concentration ``CONCENTRATION``) against the planned shares,
``BF = Gamma(A) / Gamma(A + n) * prod(Gamma(a_i + x_i) / Gamma(a_i)) / prod(p_i ** x_i)`` with ``a_i = A p_i``, is a
martingale under the planned split, so ``min(1, 1 / BF)`` falls to ``alpha`` at some read with probability at most
``alpha`` (Ville). It needs more cases than one chi-square read to see a given mismatch (52/48 at 20,000 cases:
about 97% below 0.01, where one chi-square read is flagged almost always).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from scipy.special import gammaln  # type: ignore[import-untyped]
from scipy.stats import chisquare  # type: ignore[import-untyped]

from experiments.arms import ExperimentError, _count
from experiments.split import planned_shares

WARN_BELOW = 0.01
ALERT_BELOW = 0.001
#: the Dirichlet mixture's concentration (the sum of its parameters) for the always-valid p-value: a prior spread of
#: the shares of about 1.6 points around a half, the size of mismatch worth finding early
CONCENTRATION = 1000.0


class SrmLevel(StrEnum):
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"


def srm_level(p_value: float) -> SrmLevel:
    """``alert`` below p 0.001, ``warn`` below p 0.01, else ``ok``."""
    if p_value < ALERT_BELOW:
        return SrmLevel.ALERT
    if p_value < WARN_BELOW:
        return SrmLevel.WARN
    return SrmLevel.OK


@dataclass(frozen=True)
class SampleRatio:
    """The check's result: cases observed and expected per arm, the chi-square statistic (degrees of freedom: arms
    minus one), its p-value, the level, and the always-valid p-value (see the module docstring)."""

    observed: Mapping[str, int]
    expected: Mapping[str, float]
    statistic: float
    p_value: float
    level: SrmLevel
    always_valid_p_value: float

    @property
    def flagged(self) -> bool:
        """Warn or alert."""
        return self.level is not SrmLevel.OK


def check_sample_ratio(units: Mapping[str, int], weights: Mapping[str, float]) -> SampleRatio:
    """Cases per arm (``units``) against the planned split (``weights``, which must name the same arms)."""
    if not isinstance(units, Mapping) or len(units) < 2:
        raise ExperimentError(f"the SRM check needs the cases of at least two arms, got {units!r}")
    observed = {name: _count(f"arm {name!r}", "units", n) for name, n in units.items()}
    shares = planned_shares(weights, observed)
    total = sum(observed.values())
    expected = {name: total * shares[name] for name in observed}
    if total == 0:
        return SampleRatio(observed, expected, 0.0, 1.0, SrmLevel.OK, 1.0)
    names = list(observed)
    statistic, p_value = chisquare([observed[n] for n in names], [expected[n] for n in names])
    return SampleRatio(observed, expected, float(statistic), float(p_value), srm_level(float(p_value)),
                       always_valid_srm_p_value(observed, shares))


def always_valid_srm_p_value(units: Mapping[str, int], shares: Mapping[str, float],
                             concentration: float = CONCENTRATION) -> float:
    """``min(1, 1 / BF)`` of the Dirichlet-multinomial test of the cases per arm against the planned shares."""
    names = list(units)
    counts = [float(units[n]) for n in names]
    prior = [concentration * shares[n] for n in names]
    n = sum(counts)
    log_bf = float(gammaln(concentration) - gammaln(concentration + n))
    for x, a, name in zip(counts, prior, names, strict=True):
        log_bf += float(gammaln(a + x) - gammaln(a)) - x * math.log(shares[name])
    return 1.0 if log_bf <= 0 else math.exp(-log_bf)
