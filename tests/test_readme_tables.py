"""The benchmark tables of README.md and docs/*.md are the ones scripts/readme_tables.py renders from
benchmarks/results/."""

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_tables_are_in_sync_with_the_results_files():
    rt = load_script()
    paths = rt.documents()
    assert paths[0] == ROOT / "README.md" and ROOT / "docs" / "benchmarks.md" in paths
    texts = {path: path.read_text() for path in paths}
    new, missing = rt.render_all(texts)
    assert missing == [], f"neither README.md nor docs/*.md has the regions {missing}"
    for path, text in texts.items():
        assert new[path] == text, (f"{path.relative_to(ROOT)}'s tables differ from benchmarks/results/: "
                                   "run python scripts/readme_tables.py")
    for name in ("engine", "density", "e2e"):  # the headline figures stay on the front door
        assert rt.region(name).search(texts[ROOT / "README.md"]), f"README.md lacks the {name} table"


def test_a_changed_result_changes_its_table_and_names_its_source(tmp_path):
    rt = load_script()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    e2e = json.loads((results / "e2e.json").read_text())
    e2e["runs"]["8"]["p99_ms"] = 123.4  # over the 100 ms target: no longer in bold
    e2e["model_version"] = "9.9.9+test"
    del e2e["date"]
    (results / "e2e.json").write_text(json.dumps(e2e))
    text = (ROOT / "README.md").read_text()
    new, _ = rt.render(text, results)
    table = rt.region("e2e").search(new).group(0)
    r8 = e2e["runs"]["8"]
    assert f"| 8 | {r8['alerts']} | {r8['p50_ms']} | 123.4 | {r8['windows']} | {r8['dropped_windows']} |" in table
    assert "date not recorded" in table and "model `9.9.9+test` (not the shipped model" in table
    assert rt.region("engine").search(new).group(0) == rt.region("engine").search(text).group(0)  # others untouched


def test_a_table_may_stand_in_any_document_but_must_stand_in_one():
    rt = load_script()
    readme = (ROOT / "README.md").read_text()
    stale = "<!-- results:ingest -->\nold\n<!-- /results:ingest -->\n"
    texts = {Path("README.md"): readme, Path("docs/other.md"): "# Other\n\n" + stale}
    new, missing = rt.render_all(texts)
    assert "ingest" not in missing and "| 1080p30 |" in new[Path("docs/other.md")]
    _, missing = rt.render_all({Path("README.md"): readme})
    assert "ingest" in missing and "engine" not in missing
