"""One-way layers, read from the source (AST): `engines/` (model, export, build, runtimes) never imports
`streamer/`, the config imports no stage, and no modules of the two packages import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streamer", "engines")

# Cycles through imports inside functions that are known and not yet taken apart; the test fails when a
# new one appears or when one of these is gone (then delete it here).
KNOWN_LAZY_CYCLES = [
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules an import names (`from a import b` names `a` and `a.b`); with `top_level_only`, only the
    imports that run when the module is imported (not those in functions or under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in (run_at_import(tree) if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return out


def run_at_import(node: ast.AST) -> list[ast.AST]:
    """The nodes that run when the module is imported: not function bodies, not `if TYPE_CHECKING:`."""
    out: list[ast.AST] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            out += [n for orelse in child.orelse for n in [orelse, *run_at_import(orelse)]]
            continue
        out += [child, *run_at_import(child)]
    return out


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {m: (imported_modules(p, top_level_only) & files.keys()) - {m} for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set(stack[stack.index(node):])
                    del stack[stack.index(node):]
                    if len(comp) > 1:
                        found.append(comp)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def test_engines_do_not_import_streamer():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "streamer")
                 for p in sorted((ROOT / "engines").rglob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders


def test_the_config_imports_no_stage():
    """streamer/config.py is read by every stage (source -> window -> engine -> event -> sink); it imports none."""
    stages = ("streamer.ingest", "streamer.engine", "streamer.detect", "streamer.outputs", "streamer.web", "engines")
    assert sorted(m for m in imported_modules(ROOT / "streamer" / "config.py") if m.startswith(stages)) == []


def test_no_import_cycles_at_import_time():
    assert cycles(import_graph(top_level_only=True)) == []


def test_no_import_cycles_through_function_imports_but_the_known_ones():
    assert sorted(map(sorted, cycles(import_graph(top_level_only=False)))) == sorted(map(sorted, KNOWN_LAZY_CYCLES))


def test_the_checks_see_an_import_and_a_cycle(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("import os\nif TYPE_CHECKING:\n    import a\ntry:\n    import b\nexcept ImportError:\n    pass\n\n"
                 "def f():\n    from streamer.ingest import clip\n")
    assert {"streamer.ingest", "streamer.ingest.clip", "a"} <= imported_modules(p)
    assert imported_modules(p, top_level_only=True) == {"os", "b"}
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [{"a", "b", "c"}]
