"""Normal-mixture boundaries: how far a sum of standardised observations may stray from zero at any time, so that
the chance it ever crosses is at most ``alpha``, however often it is looked at.

Sources. Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Annals of Statistics 49(2), 2021: the two-sided normal mixture (after Robbins 1970), the one-sided one, and the
mixture's scale that makes the boundary tightest at a planned time; the same formulas as the authors' ``confseq``
library (``TwoSidedNormalMixture``, ``OneSidedNormalMixture``, ``best_rho``). With the variance estimated from the
data, the same boundary gives an asymptotic confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences", Annals of Statistics 2024), which is
GrowthBook's "sequential testing"; the mixture likelihood ratio is the mSPRT of Johari, Koomen, Pekelis and Walsh
("Always valid inference: continuous monitoring of A/B tests", Operations Research 70(3), 2022).

Definitions. ``time`` is intrinsic time: the variance of the sum so far in units of one observation's variance (the
number of observations). ``scale`` (rho) is the mixture's scale in the same units. The two-sided mixture
martingale of a standardised sum ``s`` at ``time`` v is ``sqrt(rho / (v + rho)) * exp(s**2 / (2 (v + rho)))``;
by Ville's inequality it exceeds ``1 / alpha`` with probability at most ``alpha`` at any time, ever.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq  # type: ignore[import-untyped]
from scipy.special import log_ndtr  # type: ignore[import-untyped]

from experiments.arms import ExperimentError


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ExperimentError(f"alpha must be between 0 and 1, got {alpha!r}")
    return float(alpha)


def check_planned_units(planned: float) -> float:
    """The planned sample size an always-valid test is tuned to: a positive number."""
    if isinstance(planned, bool) or not isinstance(planned, int | float) or not planned > 0:
        raise ExperimentError(f"the planned sample size must be positive, got {planned!r}")
    return float(planned)


def mixture_scale(planned_time: float, alpha: float, one_sided: bool = False) -> float:
    """The scale rho that makes the boundary tightest at ``planned_time`` (Howard et al.; ``confseq``'s ``best_rho``):
    ``planned_time / (2 log(1/a) + log(1 + 2 log(1/a)))`` with ``a = alpha`` (two-sided) or ``2 alpha`` (one-sided,
    as ``confseq`` does). Any positive scale gives a valid boundary; the plan only decides where it is narrowest."""
    planned = check_planned_units(planned_time)
    a = min(_check_alpha(alpha) * (2 if one_sided else 1), 0.5)
    log_inv = math.log(1 / a)
    return planned / (2 * log_inv + math.log(1 + 2 * log_inv))


def two_sided_log_martingale(s: float, time: float, scale: float) -> float:
    """The log of the two-sided normal-mixture martingale at standardised sum ``s`` and intrinsic ``time``."""
    return 0.5 * math.log(scale / (time + scale)) + s * s / (2 * (time + scale))


def two_sided_bound(time: float, alpha: float, scale: float) -> float:
    """The ``s`` at which the two-sided martingale reaches ``1 / alpha``:
    ``sqrt((v + rho) (log(1 + v / rho) + 2 log(1 / alpha)))``."""
    return math.sqrt((time + scale) * (math.log1p(time / scale) + 2 * math.log(1 / _check_alpha(alpha))))


def one_sided_log_martingale(s: float, time: float, scale: float) -> float:
    """The log of the one-sided normal-mixture martingale (the mixture over positive drifts only):
    ``log(2 sqrt(rho / (v + rho))) + s**2 / (2 (v + rho)) + log Phi(s / sqrt(v + rho))``."""
    return (0.5 * math.log(4 * scale / (time + scale)) + s * s / (2 * (time + scale))
            + float(log_ndtr(s / math.sqrt(time + scale))))


def one_sided_bound(time: float, alpha: float, scale: float) -> float:
    """The ``s`` at which the one-sided martingale reaches ``1 / alpha`` (found by ``scipy.optimize.brentq``; it
    lies between 0 and the two-sided bound at the same scale, where the one-sided martingale is larger)."""
    target = math.log(1 / _check_alpha(alpha))
    high = two_sided_bound(time, alpha, scale)
    return float(brentq(lambda s: one_sided_log_martingale(s, time, scale) - target, 0.0, high, xtol=1e-10))
