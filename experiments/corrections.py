"""Several variants against one control: how the error rate is kept at ``alpha`` for the experiment as a whole.

With ``k`` variants there are ``k`` comparisons with control, each a chance of a false "significant". Two
corrections, both valid under continuous monitoring:

- *intervals*: Bonferroni, each comparison's always-valid interval at ``alpha / k``. The intervals then hold
  together: the chance that any of them ever misses its true effect is at most ``alpha``;
- *decisions* ("this variant differs from control"): Holm's step-down procedure on the always-valid p-values
  (Holm 1979: sort them; reject the ``i``-th smallest while it is at most ``alpha / (k - i)``, counting from 0, and
  stop at the first that is not). Written out here rather than called from statsmodels' ``multipletests``, which
  runs a full garbage collection on every call (about 30 ms in a test process, more in the app); the tests check it
  against ``multipletests``. It rejects everything Bonferroni rejects and sometimes more, and it stays valid when
  read continuously: a true "no difference" is rejected at some read only if its always-valid p-value ever falls
  to ``alpha / k0`` (``k0`` the number of true nulls), which by Ville's inequality happens with probability at most
  ``alpha / k0`` each, ``alpha`` in all.

So a variant can be significant (Holm) while its Bonferroni interval still touches 0, when several variants differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.arms import ExperimentError
from experiments.boundaries import _check_alpha


def per_comparison_alpha(alpha: float, comparisons: int) -> float:
    """Bonferroni: ``alpha / comparisons``."""
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ExperimentError(f"the number of comparisons must be a positive integer, got {comparisons!r}")
    return _check_alpha(alpha) / comparisons


def holm_significant(p_values: Sequence[float], alpha: float) -> tuple[bool, ...]:
    """Which of the comparisons Holm's procedure rejects at family-wise ``alpha``."""
    alpha = _check_alpha(alpha)
    k = len(p_values)
    rejected = [False] * k
    for rank, index in enumerate(sorted(range(k), key=lambda i: p_values[i])):
        if p_values[index] > alpha / (k - rank):
            break
        rejected[index] = True
    return tuple(rejected)
