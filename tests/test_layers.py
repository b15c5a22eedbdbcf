"""One-way layers: `engines/` (model, export, build, runtimes) never imports `streamer/`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_engines_do_not_import_streamer():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "streamer")
                 for p in sorted((ROOT / "engines").rglob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


def test_the_check_sees_an_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from streamer.ingest import clip\n")
    assert "streamer.ingest" in imported_modules(p)
