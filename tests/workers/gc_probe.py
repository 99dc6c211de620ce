"""A job for tests/workers/test_worker_gc.py: what the garbage collector looks like inside a worker's job."""

from __future__ import annotations

import gc
import json


def report(redis_url: str, key: str) -> None:
    from redis import Redis

    Redis.from_url(redis_url).set(key, json.dumps({"thresholds": gc.get_threshold(),
                                                   "frozen": gc.get_freeze_count()}))
