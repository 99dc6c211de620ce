"""docs/architecture.md matches the tree: its layout names every part of ``app/`` and every module path the docs
name exists. The README links it, and nothing a user of Recoup reads points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def layout_block() -> str:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    start = text.index("## Layout")
    block = text[start:].split("```")[1]
    return block


def named_in_layout(name: str) -> bool:
    return re.search(rf"(?<![\w/.]){re.escape(name)}(?![\w])", layout_block()) is not None


def test_the_layout_names_every_package_and_top_level_module_of_app():
    app = ROOT / "app"
    parts = [f"{d.name}/" for d in app.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))]
    parts += [f.name for f in app.glob("*.py")]
    missing = sorted(part for part in parts if not named_in_layout(part))
    assert missing == [], f"docs/architecture.md's layout does not name: {missing}"


def test_the_layout_names_every_top_level_folder():
    folders = [d.name + "/" for d in ROOT.iterdir()
               if d.is_dir() and not d.name.startswith((".", "_")) and d.name not in {"instance", "node_modules"}
               and any(d.rglob("*.py")) or (d.is_dir() and d.name in {"docs", "examples"})]
    missing = sorted(f for f in folders if not named_in_layout(f))
    assert missing == [], f"docs/architecture.md's layout does not name: {missing}"


def docs_text() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in pages]


def test_every_module_path_the_docs_name_exists():
    missing = []
    for page, text in docs_text():
        for path in re.findall(r"(?<![\w/])((?:app|admin|rules|dsl|workers|sandbox|bench|tests)/[\w/]+\.py)", text):
            if not (ROOT / path).is_file():
                missing.append(f"{page}: {path}")
        for dotted in re.findall(r"`((?:app|admin|rules|dsl|workers)\.[\w.]+)", text):
            if not module_prefix_exists(dotted):
                missing.append(f"{page}: {dotted}")
    assert missing == []


def module_prefix_exists(dotted: str) -> bool:
    """``app.outbox.run.dispatch_due`` exists when some prefix is a module file or a package (the rest being names
    in it)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def test_the_readme_links_the_architecture_and_nothing_points_outside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
    for page, text in docs_text():
        assert "../shared" not in text and "DESIGN.md" not in text, page
