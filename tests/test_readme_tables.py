"""scripts/readme_tables.py renders the benchmark tables of README.md and docs/*.md from benchmarks/results/,
and its --check fails on a stale table. Whether the committed files are in sync is `make lint`'s check."""

import json
import shutil
from pathlib import Path

from tests import scripts

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    return scripts.load_script("readme_tables")


def copy_results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    return results


def edit(results: Path, file: str, change) -> dict:
    res = json.loads((results / file).read_text())
    change(res)
    (results / file).write_text(json.dumps(res))
    return res


def test_a_changed_result_changes_its_table_and_names_its_source(tmp_path):
    rt = load_script()
    results = copy_results(tmp_path)

    def slower(e2e):
        e2e["runs"]["8"]["p99_ms"] = 123.4  # over the 100 ms target: no longer in bold
        e2e["model_version"] = "9.9.9+test"
        del e2e["date"]

    e2e = edit(results, "e2e.json", slower)
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    new, _ = rt.render(text, results)
    table = rt.region("e2e").search(new).group(0)
    r8 = e2e["runs"]["8"]
    assert f"| 8 | {r8['alerts']} | {r8['p50_ms']} | 123.4 | {r8['windows']} | {r8['dropped_windows']} |" in table
    assert "date not recorded" in table and "model `9.9.9+test` (not the shipped model" in table
    assert rt.region("engine").search(new).group(0) == rt.region("engine").search(text).group(0)  # others untouched


def test_the_summary_takes_each_figure_from_its_file(tmp_path):
    rt = load_script()
    results = copy_results(tmp_path)
    edit(results, "e2e.json", lambda r: r["runs"]["8"].update(p99_ms=87.0))  # now within the 100 ms target
    edit(results, rt.SOAK_FILE, lambda r: r.update(recovery_s_max=6.5, alerts_lost=3, faults_not_recovered=0))
    edit(results, "engine.json", lambda r: r.update(ort_windows_per_s_b8=41.6))
    readme = (ROOT / "README.md").read_text()
    new, missing = rt.render(readme, results)
    assert "summary" not in missing
    table = rt.region("summary").search(new).group(0)
    assert "| 42 windows/s |" in table
    assert "| 87 ms | <= 100 ms |" in table
    assert "| 6.50 s | <= 5 s: **not met** |" in table
    assert "| 3 / 0 of " in table


def test_check_fails_on_a_stale_table_and_passes_once_rendered(tmp_path, capsys):
    rt = load_script()
    root = tmp_path / "tree"
    (root / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", root / "README.md")
    for doc in (ROOT / "docs").glob("*.md"):
        shutil.copy(doc, root / "docs" / doc.name)
    results = copy_results(tmp_path)
    edit(results, "density.json", lambda r: r["cases"]["720p25"].update(cameras_realtime=99))
    assert rt.main(["--check"], root=root, results=results) == 1
    assert "docs/benchmarks.md (density)" in capsys.readouterr().err
    assert rt.main([], root=root, results=results) == 0  # rewrites the tables
    assert rt.main(["--check"], root=root, results=results) == 0
    assert "| 720p25 | 99 |" in (root / "docs" / "benchmarks.md").read_text()
    assert "| 99 / " in (root / "README.md").read_text()  # the summary's camera counts too


def test_the_readme_must_hold_the_summary(tmp_path, capsys):
    rt = load_script()
    root = tmp_path / "tree"
    (root / "docs").mkdir(parents=True)
    summary = rt.region("summary").search((ROOT / "README.md").read_text()).group(0)
    (root / "README.md").write_text("# streamer\n")
    for doc in (ROOT / "docs").glob("*.md"):
        shutil.copy(doc, root / "docs" / doc.name)
    (root / "docs" / "benchmarks.md").write_text((root / "docs" / "benchmarks.md").read_text() + "\n" + summary + "\n")
    assert rt.main(["--check"], root=root) == 1
    assert "README.md lacks the summary table" in capsys.readouterr().err


def test_a_table_may_stand_in_any_document_but_must_stand_in_one():
    rt = load_script()
    readme = (ROOT / "README.md").read_text()
    stale = "<!-- results:ingest -->\nold\n<!-- /results:ingest -->\n"
    texts = {Path("README.md"): readme, Path("docs/other.md"): "# Other\n\n" + stale}
    new, missing = rt.render_all(texts)
    assert "ingest" not in missing and "| 1080p30 |" in new[Path("docs/other.md")]
    _, missing = rt.render_all({Path("README.md"): readme})
    assert "ingest" in missing and "summary" not in missing
