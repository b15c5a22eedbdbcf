"""What a /metrics scrape costs after many process restarts, with dead processes' files left in place
(as before) and folded into the archive (streamer.outputs.metrics.process_exited).

    python -m benchmarks.scrape --deaths 0,40,200 --json benchmarks/results/scrape.json

Children record what the real ones do: an ingest process its camera's counters and live gauge, an engine
process its stage histograms, batch sizes and pose counters, for 6 cameras; one ingest death in two, an
engine death in two (a soak's ingest_kill and engine_kill alternate). Each child is spawned, records,
exits. `scrape_ms`: median over `--repeats` of rendering every process's metrics (generate_latest over
the multiprocess collector), the work of one /metrics request; `files`: the .db files it read.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

CAMERAS = [f"cam{i:02d}" for i in range(6)]


def _ingest(camera: str) -> None:
    from streamer.outputs import metrics as m

    for c in (m.FRAMES_DECODED, m.WINDOWS, m.AUDIO_FRAMES_DECODED, m.RECONNECTS):
        c.labels(camera).inc(100)
    m.SOURCE_UP.labels(camera).set(1)


def _engine() -> None:
    from streamer.outputs import metrics as m

    for i in range(200):
        m.STAGE_LATENCY.labels("infer").observe(0.01 * (i % 40))
        m.STAGE_LATENCY.labels("queue").observe(0.005 * (i % 40))
        m.BATCH_SIZE.observe(1 + i % 8)
    for cam in CAMERAS:
        m.POSE_FRAMES.labels("computed").inc(10)
        m.WINDOWS_DROPPED.labels(cam, "ring_full").inc(0)


def _run(ctx, target, args=()) -> int:
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join()
    return p.pid


def measure(deaths: int, folded: bool, repeats: int) -> dict:
    from prometheus_client import generate_latest
    from prometheus_client import multiprocess as prom_mp

    from streamer.outputs import metrics as m

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="streamer-scrape-") as d:
        os.environ[m.MULTIPROC_ENV] = d
        for cam in CAMERAS:  # the running set's files (these processes are never marked dead)
            _run(ctx, _ingest, (cam,))
        _run(ctx, _engine)
        for i in range(deaths):
            pid = _run(ctx, _ingest, (CAMERAS[i % len(CAMERAS)],)) if i % 2 == 0 else _run(ctx, _engine)
            if folded:
                m.process_exited(pid)
            else:
                prom_mp.mark_process_dead(pid, d)
        took = []
        for _ in range(repeats):
            t = time.perf_counter()
            m.collect(generate_latest)
            took.append(time.perf_counter() - t)
        return {"deaths": deaths, "folded": folded, "files": len(list(Path(d).glob("*.db"))),
                "scrape_ms": round(statistics.median(took) * 1000, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deaths", default="0,40,200", help="process deaths before the scrape, comma-separated")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    rows = [measure(int(n), folded, a.repeats) for n in a.deaths.split(",") for folded in (False, True)]
    for r in rows:
        print(f"deaths {r['deaths']:4d}  {'folded' if r['folded'] else 'left  '}  files {r['files']:4d}  scrape {r['scrape_ms']:7.2f} ms")
    out = {"rows": rows, "repeats": a.repeats, "cameras": len(CAMERAS),
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version()},
           "date": datetime.now().astimezone().isoformat(timespec="seconds")}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
