"""The chaos month: a time-warped month of failed payments through the whole system (NMI fetch and webhooks, a
real RQ worker process, the channel simulators) while MariaDB and Redis are SIGKILLed and restarted, providers
answer with 5xx storms and time out, the worker is killed and the clock jumps; then the judges: every failure
ingested once, no duplicate, no loss, no send in quiet hours or to an opted-out channel, the audit chain intact.
See ``tests/chaos.py``.

    .venv/bin/python bench/chaos.py [--days 30] [--step-hours 17] [--per-step 2] [--seed 11] [--without worker_kill]

Runs its own MariaDB and Redis (``mariadb-install-db``, ``mariadbd`` and ``redis-server`` from Debian's packages)
in a scratch folder; the machine's servers are not touched. Exit status 1 on any problem.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--step-hours", type=int, default=17,
                        help="how far the business clock moves per step (17: every step at another hour of the day)")
    parser.add_argument("--per-step", type=int, default=2, help="failed payments per step")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--step-timeout", type=float, default=90.0,
                        help="seconds a step may take to catch up (a killed worker's RQ scheduler lock lives 61 s)")
    parser.add_argument("--without", default="", help="troubles to leave out, by name, comma-separated "
                        "(mariadb, redis, storm, timeouts, clock_jump, worker_kill, mariadb+redis, storm+mariadb)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (new) and keep it: the servers' and worker's logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("werkzeug", "alembic", "app.web.hooks"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from tests.chaos import chaos_month
    from tests.private_servers import available

    why = available()
    if why:
        raise SystemExit(f"cannot run the chaos month here: {why}")
    without = tuple(part.strip() for part in args.without.split(",") if part.strip())
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=False)
        report = chaos_month(work, days=args.days, step_hours=args.step_hours, per_step=args.per_step,
                             seed=args.seed, step_timeout=args.step_timeout, without=without)
    else:
        with tempfile.TemporaryDirectory(prefix="recoup-chaos-") as scratch:
            report = chaos_month(Path(scratch), days=args.days, step_hours=args.step_hours, per_step=args.per_step,
                                 seed=args.seed, step_timeout=args.step_timeout, without=without)
    print(report.summary(), flush=True)
    if not report.ok and report.log_tail:
        print("\nthe worker's last words:\n" + report.log_tail[-2000:])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
