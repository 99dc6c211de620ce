"""New cases go to planning as a job referenced by import (a renamed job fails at import, not in a worker)."""

import pathlib
import re

from app.ingest.transactions import hand_to_planning
from workers import jobs


class RecordingQueue:
    kind = "recording"

    def __init__(self):
        self.calls = []

    def enqueue(self, func, *args, queue="default", job_id=None, **kw):
        self.calls.append((func, args, queue))


def test_new_cases_are_planned_by_the_job_function_in_batches_on_the_high_queue(app):
    queue = RecordingQueue()
    app.extensions["recoup.queue"] = queue
    hand_to_planning(list(range(1, 451)))
    assert [func for func, _, _ in queue.calls] == [jobs.plan_cases] * 3
    assert {q for _, _, q in queue.calls} == {"high"}
    assert [args[0] for _, args, _ in queue.calls] == [
        list(range(1, 201)), list(range(201, 401)), list(range(401, 451))
    ]


def test_no_app_module_names_a_job_by_its_import_path():
    root = pathlib.Path(__file__).resolve().parents[2] / "app"
    named = re.compile(r"""["']workers\.[a-z_.]+["']""")
    found = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if named.search(line)
    ]
    assert found == []
