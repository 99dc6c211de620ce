"""The short form of ``bench/soak.py`` in CI: two crash rounds on MariaDB + Redis, run as the bench runs (its own
databases, its own worker processes), must report no duplicate, no loss and no failed round. The 20-round figure is
the bench's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import backends

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.redis
def test_two_soak_rounds_lose_and_duplicate_nothing(backend, pytestconfig):
    if backend != "mysql":
        pytest.skip("the soak runs on MariaDB + Redis")
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    env = {**os.environ, "RECOUP_BENCH_MYSQL_URL": backends.MYSQL_SERVER_URL,
           "RECOUP_BENCH_REDIS_URL": backends.spare_redis_url("soak")}
    done = subprocess.run([sys.executable, "bench/soak.py", "--rounds", "2", "--n", "300", "--kills", "2",
                           "--deadline", "300"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "PASS: 0 duplicate(s), 0 lost, 0 failed round(s)" in done.stdout, report
    for channel in ("email", "sms", "whatsapp", "receipt"):
        assert f"\n{channel} " in done.stdout, report
