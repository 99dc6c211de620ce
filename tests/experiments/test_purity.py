"""``experiments/`` is a domain core like ``rules/``: it imports nothing of the application, the web framework, the
database or the queue, and its modules import each other without a cycle (read from the source, as
tests/test_imports.py reads ``dsl`` and ``rules``)."""

from __future__ import annotations

from tests.test_imports import cycles, import_graph, imported_names, module_files

OUTSIDE = ("app", "admin", "workers", "sandbox", "flask", "flask_admin", "sqlalchemy", "redis", "rq", "dsl", "tests")


def test_experiments_is_pure_python() -> None:
    files = module_files(("experiments",))
    assert len(files) > 10
    offenders = {}
    for module, path in files.items():
        names = imported_names(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", top_level=False)
        bad = sorted(n for n in names if n.split(".")[0] in OUTSIDE)
        if bad:
            offenders[module] = bad
    assert offenders == {}


def test_experiments_has_no_import_cycle() -> None:
    graph = import_graph(module_files(("experiments",)))
    assert graph["experiments.readout"]  # the walk found the imports
    assert cycles(graph) == []
