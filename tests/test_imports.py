"""The arrows between packages point one way: ``dsl`` compiles into ``rules``, and nothing in ``dsl``, ``rules`` or
``admin`` imports itself round in a circle. ``import rules.planner`` stays light: no Lark, no ``dsl``.

The import graph is read from the source (each module's top-level imports, as Python runs them on import), not by
importing anything, so a cycle that happens to work today because of import order is still found.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dsl", "rules", "admin")


def module_files(packages: Iterable[str] = PACKAGES, root: Path = ROOT) -> dict[str, Path]:
    """``rules.timing.zones`` -> its file, for every module of ``packages`` (a package is its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _top_level_imports(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: in its body, also inside top-level if/try/with blocks (an
    ``if TYPE_CHECKING:`` import counts: it states a dependency all the same), never inside a function or class."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    pending.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, source: str, is_package: bool, top_level: bool) -> list[tuple[str, str | None]]:
    """(module, name) for each ``from module import name``; (module, None) for each ``import module``."""
    tree = ast.parse(source)
    nodes = _top_level_imports(tree) if top_level else (
        n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
    found: list[tuple[str, str | None]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        else:
            base = _absolute(module, node, is_package)
            found += [(base, alias.name) for alias in node.names]
    return found


def imported_names(module: str, source: str, is_package: bool = False, *, top_level: bool = True) -> set[str]:
    """Every name ``module`` imports, as written: ``from a import b`` gives ``a`` and ``a.b``."""
    names: set[str] = set()
    for base, name in _imports(module, source, is_package, top_level):
        names.add(base)
        if name is not None:
            names.add(f"{base}.{name}")
    return names


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """module -> the modules among ``files`` that importing it runs. ``from a import b`` needs the module ``a.b``
    when there is one, else ``a`` itself (b is a name ``a`` defines). Importing ``a.b.c`` runs ``a`` and ``a.b``
    first, so those count too, except the importer's own packages (already under way when it runs)."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}  # itself and its packages
        targets: set[str] = set()
        for base, name in _imports(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", True):
            needed = f"{base}.{name}" if name is not None and f"{base}.{name}" in files else base
            parts = needed.split(".")
            targets.update(
                prefix
                for prefix in (".".join(parts[:i]) for i in range(1, len(parts)))
                if prefix in files and prefix not in own
            )
            if needed in files and needed != module:
                targets.add(needed)
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (or a module importing itself), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iteratively (no recursion limit to meet)
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# --- the checks ---------------------------------------------------------------------------------------------------


def test_no_import_cycle_among_dsl_rules_and_admin() -> None:
    graph = import_graph(module_files())
    assert len(graph) > 40 and graph["rules.planner"]  # the walk found the modules and their imports
    assert cycles(graph) == []


def test_rules_imports_neither_dsl_nor_lark() -> None:
    """Not at the top, not inside a function: the decision core knows nothing of the language."""
    offenders = {}
    for module, path in module_files(("rules",)).items():
        names = imported_names(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", top_level=False)
        bad = sorted(n for n in names if n.split(".")[0] in ("dsl", "lark"))
        if bad:
            offenders[module] = bad
    assert offenders == {}


@pytest.mark.parametrize("package", ["dsl", "rules"])
def test_the_core_is_pure_python(package: str) -> None:
    """dsl/ and rules/ import nothing of the application, the web framework, the database or the queue."""
    outside = ("app", "admin", "workers", "sandbox", "flask", "flask_admin", "sqlalchemy", "redis", "rq")
    offenders = {}
    for module, path in module_files((package,)).items():
        names = imported_names(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", top_level=False)
        bad = sorted(n for n in names if n.split(".")[0] in outside)
        if bad:
            offenders[module] = bad
    assert offenders == {}


def test_rules_planner_imports_without_lark_or_dsl() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rules.planner"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    assert "rules.planner" in imported  # the report was read
    assert [m for m in imported if m.split(".")[0] in ("lark", "dsl")] == []


# --- the checks can fail ------------------------------------------------------------------------------------------


def test_cycles_are_found_however_long() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["a", "b"], ["c", "d"]]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    def write(name: str, text: str) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write("pkg/__init__.py", "from pkg.core import thing\n")
    write("pkg/core.py", "import os\n\ndef late():\n    from pkg import helper\n")
    write("pkg/helper.py", "from . import core\n")
    write("pkg/sub/__init__.py", "")
    write("pkg/user.py", "from pkg.sub.leaf import x\nfrom pkg import thing\n")
    write("pkg/sub/leaf.py", "from pkg.sub import sibling\n")
    write("pkg/sub/sibling.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import leaf\n")
    return tmp_path


def test_the_graph_reads_what_runs_on_import(tree: Path) -> None:
    graph = import_graph(module_files(("pkg",), tree))
    assert graph["pkg"] == {"pkg.core"}
    assert graph["pkg.core"] == set()  # a function's import runs later, not on import
    assert graph["pkg.helper"] == {"pkg.core"}  # ``from . import core``: a module of its own package
    assert graph["pkg.sub.leaf"] == {"pkg.sub.sibling"}  # its own packages are already under way
    assert graph["pkg.user"] == {"pkg", "pkg.sub", "pkg.sub.leaf"}  # a name from a package needs its __init__
    assert cycles(graph) == [["pkg.sub.leaf", "pkg.sub.sibling"]]
