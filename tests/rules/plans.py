"""The planner's answer as the plan column and the simulator write it (the documented JSON)."""

from __future__ import annotations

from typing import Any

from rules.planner import plan


def plan_json(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return plan(*args, **kwargs).to_json()
