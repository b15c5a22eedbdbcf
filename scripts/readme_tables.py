"""The benchmark tables of README.md and docs/*.md, rendered from benchmarks/results/*.json.

Each table stands between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, under a line naming its
file, date, machine and model version, in README.md or any docs/*.md (the README holds the summary, a few
headline figures from several files; the rest stand in docs/benchmarks.md and beside the prose they belong
to); every region is rendered wherever it stands, and each table must stand somewhere. Text outside the
markers is left alone.

    python scripts/readme_tables.py           # rewrite the tables in README.md and docs/*.md
    python scripts/readme_tables.py --check   # exit 1, naming the files and tables, when one is out of date (make lint)

A new table: a function from the results dict to the table's lines, added to TABLES with its file (or
files: the function then gets a dict of file -> results).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL_SIDECAR = ROOT / "engines" / "weights" / "fusion.json"  # the shipped model's version


def whole(x: float) -> str:
    """Rounded half up (110.5 -> 111), as a person reads it."""
    return str(int(x + 0.5))


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def span(values: list[float], unit: str = " s") -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}{unit}" if lo == hi else f"{lo:.2f}-{hi:.2f}{unit}"


# targets the tables judge against (the issues'): one place each
E2E_P99_MS, RECOVERY_S, RSS_PCT, P99_RATIO = 100, 5, 3, 1.2


def target(text: str, ok: bool) -> str:
    """A target cell, marked when the figure misses it."""
    return text if ok else f"{text}: **not met**"


def shipped_version() -> str | None:
    return json.loads(MODEL_SIDECAR.read_text()).get("version")


def source_line(file: str, res: dict, uses_model: bool = True) -> str:
    """Where the numbers come from: file, date, machine and model version (flagged when not the shipped one)."""
    m = res.get("machine", {})
    machine = f"{m.get('cpus', '?')} CPUs {m.get('processor', '?')}"
    machine += f", Python {m['python']}" if "python" in m else ""
    date = str(res["date"])[:10] if "date" in res else "date not recorded"  # an ISO time keeps its day
    if not uses_model:
        model = "no model (decoding only)"
    elif "model_version" not in res:
        model = "model version not recorded"
    else:
        shipped = shipped_version()
        model = f"model `{res['model_version']}`"
        model += "" if res["model_version"] == shipped else f" (not the shipped model, `{shipped}`)"
    return f"_From `benchmarks/results/{file}`: {date}, {machine}; {model}._"


def ingest_table(res: dict) -> list[str]:
    lines = [source_line("ingest.json", res, uses_model=False), "",
             "| file | ffmpeg fps | naive fps (reference) | streamer fps | vs ffmpeg (target >= 0.9) | vs naive "
             "| real-time streams | all frames fps |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in res.items():
        if isinstance(row, dict) and "ffmpeg_fps" in row:
            ratio = row["ratio_vs_ffmpeg"]
            lines.append(f"| {name} | {row['ffmpeg_fps']:.1f} | {row['naive_fps']:.1f} | {row['streamer_fps']:.1f} | "
                         f"{bold(f'{ratio:.2f}', ratio >= 0.9)} | {row['ratio_vs_naive']:.2f} | "
                         f"{row['realtime_streams']:.1f} | {row['streamer_all_frames_fps']:.1f} |")
    return lines


def e2e_table(res: dict) -> list[str]:
    lines = [source_line("e2e.json", res), "",
             f"| cameras | alerts | p50 ms | p99 ms (target <= {E2E_P99_MS} at 8) | windows | dropped |",
             "|---|---|---|---|---|---|"]
    for run in sorted(res["runs"].values(), key=lambda r: r["cameras"]):
        p99 = bold(f"{run['p99_ms']:.1f}", run["cameras"] == 8 and run["p99_ms"] <= E2E_P99_MS)
        lines.append(f"| {run['cameras']} | {run['alerts']} | {run['p50_ms']:.1f} | {p99} | {run['windows']} | "
                     f"{run['dropped_windows']} |")
    return lines


def engine_table(res: dict) -> list[str]:
    rows = {(r["backend"], r["batch"]): r for r in res["rows"]}
    batches = sorted({b for _, b in rows})
    ort = [rows.get(("onnxruntime", b)) for b in batches]
    torch = [rows.get(("torch", b)) for b in batches]

    def cells(values: list[str]) -> str:
        return " | ".join(values) + " |"

    return [
        source_line("engine.json", res), "",
        "| backend | " + cells([f"batch {b}" for b in batches]),
        "|---|" + "---|" * len(batches),
        "| ONNX Runtime CPU, windows/s | " + cells([bold(whole(r["windows_per_s"]), b == 8) if r else "-"
                                                  for r, b in zip(ort, batches)]),
        "| torch eager, windows/s | " + cells([whole(r["windows_per_s"]) if r else "-" for r in torch]),
        "| ONNX Runtime batch latency p50 / p99 ms | " + cells([f"{r['batch_ms_p50']:.1f} / {r['batch_ms_p99']:.1f}"
                                                              if r else "-" for r in ort]),
        "",
        f"`ort_vs_torch_b8` = {res['ort_vs_torch_b8']:.2f} (target >= 1.5), `ort_windows_per_s_b8` = "
        f"{whole(res['ort_windows_per_s_b8'])} (target >= 60 for v4).",
    ]


DENSITY_CASES = {"720p25": "720p25", "1080p30": "1080p30", "1080p30+360p": "1080p30 main + 640x360 substream"}


def density_table(res: dict) -> list[str]:
    st = res["settings"]
    lines = [source_line("density.json", res), "",
             "| camera | cameras in real time | e2e p99 ms there | decode-only bound | ratio (target >= 0.9) | "
             "CPU share there: decode / windowing / ingest other / engine / detection+delivery | machine busy % there |",
             "|---|---|---|---|---|---|---|"]
    for case, r in res["cases"].items():
        share = r.get("cpu_share_at_max")
        at = next((s for s in r["steps"] if s["cameras"] == r["cameras_realtime"]), {})
        cells = [DENSITY_CASES.get(case, case), str(r["cameras_realtime"]),
                 f"{r['p99_ms_at_max']:.1f}" if r.get("p99_ms_at_max") is not None else "-",
                 f"{r['decode_only_bound']:.1f}",
                 bold(f"{r['ratio_to_bound']:.2f}", (r["ratio_to_bound"] or 0) >= 0.9),
                 " / ".join(f"{share[k]:.2f}" for k in ("decode", "windowing", "ingest_other", "engine", "detection_delivery"))
                 if share else "-",
                 f"{at['machine_busy_pct']:.0f}" if "machine_busy_pct" in at else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    steps = "; ".join(f"{case}: " + ", ".join(f"{s['cameras']} {'ok' if s['realtime'] else 'no'} ({s['p99_ms']:.0f} ms"
                                                + (f", {s['dropped']} dropped" if s.get("dropped") else "") + ")"
                                                if "p99_ms" in s else f"{s['cameras']} failed to run"
                                                for s in r["steps"])
                      for case, r in res["cases"].items())
    lines += ["", f"Steps (cameras, real time or not, e2e p99): {steps}. Measuring period {st['measure_s']:g} s per step "
                  f"after {st['warm_s']:g} s of warm-up; load average {res['loadavg_before']:.1f} before the run."]
    return lines


SOAK_FAULTS = [  # (kind, what the row says)
    ("rtsp_restart", "RTSP server restart"),
    ("camera_stall", "camera stalled 5 s"),
    ("redis_restart", "Redis restart"),
    ("redis_freeze", "Redis frozen 20 s"),
    ("ingest_kill", "ingest process SIGKILLed"),
    ("engine_kill", "engine SIGKILLed"),
]


SOAK_FILE = "soak_6cam_60min.json"  # the hour at the density limit, with faults (#25)


def p99_windows(res: dict) -> str:
    """Which first and last minutes the soak's p99 pair is over: the run's, or its fault period's."""
    minutes = f"{res['latency_window_s'] / 60:g} min"
    lo, hi = res.get("latency_span_s") or (0, res["run_s"])
    return f"first / last {minutes}" if not lo else f"first / last {minutes} of faults ({lo / 60:g}-{hi / 60:g} min)"


def soak_table(res: dict) -> list[str]:
    lines = [source_line(SOAK_FILE, res), "",
             "| | measured | target |", "|---|---|---|",
             f"| alerts accepted / delivered once / lost / duplicated | {res['alerts_accepted']} / "
             f"{res['alerts_delivered_unique']} / **{res['alerts_lost']}** / **{res['alerts_duplicated']}** | "
             "0 lost / 0 duplicated |"]
    for kind, what in SOAK_FAULTS:
        faults = [f for f in res["faults"] if f["kind"] == kind]
        if not faults:
            continue
        took = sorted(f["recovery_s"] for f in faults if f["recovery_s"] is not None)
        over = sum(t > RECOVERY_S for t in took) + len(faults) - len(took)
        measured = span(took) if not over else bold(span(took), True) + f" ({over} of {len(faults)} over {RECOVERY_S} s or never)"
        spooled = [f["spooled_max"] for f in faults if f.get("spooled_max")]
        if spooled:
            measured += (f" ({min(spooled)}-{max(spooled)} alerts spooled, all delivered within "
                         f"{max(f['delivery_recovery_s'] for f in faults):.2f} s of the end)")
        lines.append(f"| recovery, {what} (x{len(faults)}) | {measured} | {target(f'<= {RECOVERY_S} s', not over)} |")
    first, last = res["p99_ms_first"], res["p99_ms_last"]
    lines += [
        f"| RSS growth after warm-up (summed RSS of streamer's processes) | {res['rss_growth_pct']:+.1f}% (PSS "
        f"{res['pss_growth_pct']:+.1f}%; {whole(res['rss_mb_start'])} -> {whole(res['rss_mb_end'])} MB) | "
        f"{target(f'<= {RSS_PCT}% over 60 min', res['rss_growth_pct'] <= RSS_PCT)} |",
        f"| e2e p99 of alerts, {p99_windows(res)} | {whole(first)} / {whole(last)} ms (ratio "
        f"{last / first:.2f}) | {target(f'last <= {P99_RATIO}x first', last <= P99_RATIO * first)} |",
        f"| stop on SIGINT at the end | {res['stop_s']:.2f} s, exit {res['streamer_exit_code']}, "
        f"{len(res['leftover_processes']) or 'no'} process left | <= 3 s |",
    ]
    return lines


def objects_table(res: dict) -> list[str]:
    """The anomaly features' cost (benchmarks/objects.py), indented to sit in docs/how-it-works.md's Anomalies item."""
    lines = [source_line("objects.json", res, uses_model=False), "",
             "| camera | ingest (decode + windows), CPU | objects, CPU | objects per window | objects / ingest |",
             "|---|---|---|---|---|"]
    for r in res["sources"]:
        ratio = r["objects_vs_ingest"]
        lines.append(f"| {r['source']} | {r['ingest_cpu_ms_per_s']:.1f} ms/s | {r['objects_cpu_ms_per_s']:.1f} ms/s | "
                     f"{r['objects_cpu_ms_per_window']:.1f} ms | {bold(f'{ratio:.2f}', ratio > 1)} |")
    lines += ["", f"Scoring in the main process: {res['score_ms_per_window']:.1f} ms per window against "
                  f"{res['bank_objects']} normal objects."]
    return ["  " + ln if ln else "" for ln in lines]


def span_int(xs: list[int]) -> str:
    return f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"


SUMMARY_FILES = ("engine.json", "density.json", "e2e.json", SOAK_FILE)


def summary_table(res: dict[str, dict]) -> list[str]:
    """The README's few headline figures, one row each, from several results files (`res`: file -> results)."""
    eng, dens, e2e, soak = (res[f] for f in SUMMARY_FILES)
    shipped = shipped_version()
    machines = sorted({f"{r['machine'].get('cpus', '?')} CPUs {r['machine'].get('processor', '?')}" for r in res.values()})
    models = sorted({r.get("model_version", "not recorded") for r in res.values()})
    model = ", ".join(f"`{v}`" + ("" if v == shipped else " (not the shipped model)") for v in models)

    def src(file: str) -> str:
        return f"`{file}` {str(res[file].get('date', 'no date'))[:10]}"

    cases = dens["cases"]
    run8 = next((r for r in e2e["runs"].values() if r["cameras"] == 8), None)
    counts = [sum(f["kind"] == k for f in soak["faults"]) for k in sorted({f["kind"] for f in soak["faults"]})]
    lines = [f"_From `benchmarks/results/`: {'; '.join(machines)}, no GPU; model {model}._", "",
             "| measure | result | target | from |", "|---|---|---|---|",
             f"| one engine, ONNX Runtime CPU, batch 8 | {whole(eng['ort_windows_per_s_b8'])} windows/s | | {src('engine.json')} |",
             f"| live cameras in real time: {' / '.join(DENSITY_CASES.get(c, c) for c in cases)} | "
             f"{' / '.join(str(r['cameras_realtime']) for r in cases.values())} | | {src('density.json')} |"]
    if run8:
        p99 = run8["p99_ms"]
        lines.append(f"| end-to-end p99 at 8 cameras (last input -> alert published) | {p99:.0f} ms | "
                     f"{target(f'<= {E2E_P99_MS} ms', p99 <= E2E_P99_MS)} | {src('e2e.json')} |")
    rec, never = soak["recovery_s_max"], soak.get("faults_not_recovered", 0)
    p99_first, p99_last = soak["p99_ms_first"], soak["p99_ms_last"]
    soak_src = src(SOAK_FILE)
    lines += [
        f"| fault soak, {soak['cameras']} cameras, {soak['minutes']:g} min, each fault kind x{span_int(counts)}: "
        f"alerts lost / duplicated | {soak['alerts_lost']} / {soak['alerts_duplicated']} of {soak['alerts_accepted']} | "
        f"0 / 0 | {soak_src} |",
        f"| slowest recovery from a fault there | {rec:.2f} s{f' ({never} never recovered)' if never else ''} | "
        f"{target(f'<= {RECOVERY_S} s', rec <= RECOVERY_S and not never)} | {soak_src} |",
        f"| RSS growth after warm-up there | {soak['rss_growth_pct']:+.1f}% | "
        f"{target(f'<= {RSS_PCT}%', soak['rss_growth_pct'] <= RSS_PCT)} | {soak_src} |",
        f"| alerts' e2e p99 there, {p99_windows(soak)} | {whole(p99_first)} / "
        f"{whole(p99_last)} ms | {target(f'<= {P99_RATIO}x', p99_last <= P99_RATIO * p99_first)} | {soak_src} |",
    ]
    return lines


TABLES: dict[str, tuple[str | tuple[str, ...], Callable[[dict], list[str]]]] = {
    "ingest": ("ingest.json", ingest_table),
    "e2e": ("e2e.json", e2e_table),
    "engine": ("engine.json", engine_table),
    "soak": (SOAK_FILE, soak_table),
    "density": ("density.json", density_table),
    "objects": ("objects.json", objects_table),
    "summary": (SUMMARY_FILES, summary_table),
}
FRONT_DOOR = ("summary",)  # the tables README.md itself must hold


def region(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)


def documents(root: Path = ROOT) -> list[Path]:
    """Where tables may stand: README.md, then docs/*.md by name."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """`text` with every table region in it filled from its results file, and the names of the regions it lacks."""
    missing = []
    for name, (file, table) in TABLES.items():
        pattern = region(name)
        if not pattern.search(text):
            missing.append(name)
            continue
        res = (json.loads((results / file).read_text()) if isinstance(file, str)
               else {f: json.loads((results / f).read_text()) for f in file})
        body = "\n".join(table(res)) + "\n"
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text, missing


def render_all(texts: dict[Path, str], results: Path = RESULTS) -> tuple[dict[Path, str], list[str]]:
    """Every document rendered, and the names of the tables that stand in none of them."""
    rendered, absent = {}, set(TABLES)
    for path, text in texts.items():
        rendered[path], missing = render(text, results)
        absent &= set(missing)
    return rendered, [n for n in TABLES if n in absent]


def main(argv: list[str] | None = None, root: Path = ROOT, results: Path = RESULTS) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that README.md and docs/*.md are in sync (make lint)")
    args = p.parse_args(argv)
    texts = {path: path.read_text() for path in documents(root)}
    new, missing = render_all(texts, results)
    if missing:
        print(f"no region for {', '.join(missing)} in README.md or docs/*.md "
              "(<!-- results:NAME --> ... <!-- /results:NAME -->)", file=sys.stderr)
        return 1
    off_front = [n for n in FRONT_DOOR if not region(n).search(texts[root / "README.md"])]
    if off_front:
        print(f"README.md lacks the {', '.join(off_front)} table", file=sys.stderr)
        return 1
    changed = [path for path in texts if new[path] != texts[path]]
    if not changed:
        return 0
    if args.check:
        stale = [f"{path.relative_to(root)} ({', '.join(n for n in TABLES if stale_region(n, texts[path], new[path]))})"
                 for path in changed]
        print(f"tables out of date: {'; '.join(stale)}; run python scripts/readme_tables.py", file=sys.stderr)
        return 1
    for path in changed:
        path.write_text(new[path])
    return 0


def stale_region(name: str, old: str, new: str) -> bool:
    return [m.group(0) for m in region(name).finditer(old)] != [m.group(0) for m in region(name).finditer(new)]


if __name__ == "__main__":
    sys.exit(main())
