"""The garbage collector's settings of Recoup's long-running processes (app.ops.runtime): checked in a fresh
interpreter, since they are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import gc, json
from app import create_app
from app.ops.runtime import GC_THRESHOLDS, settle_garbage_collector

app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "probe"})
before = (gc.get_threshold(), gc.get_freeze_count())
settle_garbage_collector()
after = (gc.get_threshold(), gc.get_freeze_count())

class Node:
    pass

# a cycle made after start-up is still collected
a, b = Node(), Node()
a.other, b.other = b, a
del a, b
print(json.dumps({"before": before, "after": after, "thresholds": GC_THRESHOLDS, "collected": gc.collect()}))
"""


def test_a_settled_process_keeps_what_it_loaded_out_of_collections_and_still_collects_cycles():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    (thresholds_before, frozen_before), (thresholds_after, frozen_after) = found["before"], found["after"]
    assert frozen_before == 0 and thresholds_before[0] == 700  # Python's own defaults
    assert tuple(thresholds_after) == tuple(found["thresholds"]) == (10_000, 20, 20)
    assert frozen_after > 10_000, "the loaded app (its models, templates, grammar) should be frozen"
    assert found["collected"] >= 2, "a cycle made after start-up was not collected"
