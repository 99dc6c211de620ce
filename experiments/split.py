"""The planned split: each arm's weight, as the experiment was written (``{"control": 45, "B": 45, "holdout": 10}``).

A *share* is an arm's weight over the sum of the weights: the fraction of cases it is meant to get.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from experiments.arms import ExperimentError


def planned_shares(weights: Mapping[str, float], arms: Iterable[str] | None = None) -> dict[str, float]:
    """Each arm's share of the cases. With ``arms``, the weights must name exactly those arms: an arm the weights
    do not name, or a weight for an arm that is not there, is an error (a split that does not match the data would
    make every later number wrong)."""
    if not isinstance(weights, Mapping) or not weights:
        raise ExperimentError(f"the split must map arm names to weights, got {weights!r}")
    for name, weight in weights.items():
        if not isinstance(name, str) or not name:
            raise ExperimentError(f"the split names an arm {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
            raise ExperimentError(f"arm {name!r}: a weight must be a positive number, got {weight!r}")
    if arms is not None:
        names = set(arms)
        unknown = sorted(set(weights) - names)
        if unknown:
            raise ExperimentError(f"the split names unknown arms {unknown} (arms: {sorted(names)})")
        missing = sorted(names - set(weights))
        if missing:
            raise ExperimentError(f"the split gives no weight to arms {missing}")
    total = float(sum(weights.values()))
    return {name: weight / total for name, weight in weights.items()}
