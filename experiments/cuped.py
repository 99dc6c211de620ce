"""CUPED: less variance in the amount recovered per case, from each customer's payments before the experiment.

Deng, Xu, Kohavi and Walker, "Improving the sensitivity of online controlled experiments by utilizing pre-experiment
data" (WSDM 2013). With ``y`` the amount recovered per case and ``x`` the customer's pre-period payments (a covariate
the assignment cannot have changed):

- ``theta = cov(y, x) / var(x)``, over the cases of all arms pooled (one theta for every arm, so the adjustment
  cannot favour one);
- an arm's adjusted mean is ``mean(y) - theta (mean_arm(x) - mean_all(x))``: its expectation is the arm's own, since
  ``x`` has the same mean in every arm;
- its variance is ``(var(y) - 2 theta cov(y, x) + theta**2 var(x)) / n`` within the arm, i.e. ``var(y) (1 - r**2)
  / n`` at the optimal theta, where ``r`` is the correlation: the more the history predicts the amount, the
  narrower every interval built on it.

Everything comes from the arms' sums (``experiments.arms.ArmData``: ``pre_sum``, ``pre_sum_sq``, ``cross_sum``),
computed in integers until the last division.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from experiments.arms import ArmData
from experiments.estimates import Estimate


def _covariance(n: int, total_x: int, total_y: int, cross: int) -> float:
    """The sample covariance of ``n`` pairs from their totals and the total of their products."""
    if n < 2:
        return 0.0
    return (n * cross - total_x * total_y) / (n * (n - 1))


def cuped_theta(arms: Sequence[ArmData]) -> float:
    """``cov(amount, pre) / var(pre)`` over all the arms' cases pooled; 0 when the pre-period does not vary."""
    n = sum(a.units for a in arms)
    sum_y = sum(a.sum_amount for a in arms)
    sum_x = sum(a.pre_sum for a in arms)
    var_x = _covariance(n, sum_x, sum_x, sum(a.pre_sum_sq for a in arms))
    if var_x <= 0:
        return 0.0
    return _covariance(n, sum_x, sum_y, sum(a.cross_sum for a in arms)) / var_x


def pooled_pre_mean(arms: Sequence[ArmData]) -> float:
    """The mean pre-period payments per case over all arms."""
    n = sum(a.units for a in arms)
    return sum(a.pre_sum for a in arms) / n if n else 0.0


def cuped_amount_estimate(arm: ArmData, theta: float, pre_mean: float) -> Estimate:
    """The arm's amount recovered per case, adjusted by ``theta`` towards the pooled pre-period mean."""
    n = arm.units
    value = arm.amount.mean - theta * (arm.pre.mean - pre_mean)
    if n < 2:
        return Estimate(value, math.inf, n)
    var_y = arm.amount.variance
    var_x = arm.pre.variance
    cov = _covariance(n, arm.pre_sum, arm.sum_amount, arm.cross_sum)
    residual = max(var_y - 2 * theta * cov + theta * theta * var_x, 0.0)
    return Estimate(value, residual / n, n)


def cuped_amount_estimates(arms: Sequence[ArmData]) -> dict[str, Estimate]:
    """Every arm's adjusted amount per case, with theta and the pre-period mean from all of them."""
    theta = cuped_theta(arms)
    pre_mean = pooled_pre_mean(arms)
    return {arm.name: cuped_amount_estimate(arm, theta, pre_mean) for arm in arms}
