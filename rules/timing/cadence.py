"""Caps on how often a customer hears from us, over rolling windows, across channels.

A cap "at most ``n`` messages in any ``period``" blocks a new message at ``t`` exactly when ``n`` earlier (or
already scheduled) messages and ``t`` would all fit in a span shorter than ``period``. For each run of ``n``
consecutive records ``r[i] .. r[i+n-1]`` that fits, that is the open interval
``(r[i+n-1] - period, r[i] + period)``: the union of those intervals is everything the cap blocks, so the
first allowed instant is found by stepping over intervals, not by trying times. A minimum gap ``g`` is the cap
"at most 1 in any ``g``".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Interval = tuple[float, float]


@dataclass(frozen=True)
class Cap:
    """At most ``max_messages`` of the records on ``channels`` (None = every channel) in any ``period`` s."""

    max_messages: int
    period: float
    channels: frozenset[str] | None = None
    legal: bool = False


def blocked_intervals(times: Sequence[float], cap: int, period: float) -> list[Interval]:
    """Open intervals during which one more message would break "at most ``cap`` in any ``period``".

    ``times`` must be sorted. ``cap`` must be at least 1.
    """
    out: list[Interval] = []
    for i in range(len(times) - cap + 1):
        first, last = times[i], times[i + cap - 1]
        if last - first < period:
            out.append((last - period, first + period))
    return out


def merge_open(intervals: Iterable[Interval]) -> list[Interval]:
    """Merge open intervals. Two that only touch stay apart: their shared end point is allowed."""
    merged: list[Interval] = []
    for s, e in sorted(intervals):
        if merged and s < merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def next_free(blocked: Sequence[Interval], t: float) -> float:
    """The first instant >= t outside every (merged, open) interval."""
    for s, e in blocked:
        if s < t < e:
            return e
        if s >= t:
            break
    return t


def blocked_by_caps(
    caps: Iterable[Cap], records: Sequence[tuple[float, str]], since: float = float("-inf")
) -> list[Interval]:
    """Everything the caps block at or after ``since``, given the history ``records`` ((time, channel),
    sorted by time)."""
    out: list[Interval] = []
    for cap in caps:
        if len(records) < cap.max_messages:
            continue
        # A run of records starting at or before since - period only blocks instants before since.
        lo = since - cap.period
        if cap.channels is None:
            times = [t for t, _ in records if t > lo]
        else:
            times = [t for t, ch in records if t > lo and ch in cap.channels]
        if len(times) >= cap.max_messages:
            out.extend(blocked_intervals(times, cap.max_messages, cap.period))
    return merge_open(out) if len(out) > 1 else out
