"""Cost of the anomaly features: moving objects found in the ingest process, scored in the main process.

    python -m benchmarks.objects [--ped2 ../shared/data/ucsd_ped2] [--seconds 20] [--json FILE]

Each source is read by the live ingest (SourceReader, the default model's windows: 8 frames in 1 s,
hop 0.5 s) twice: objects off, where the process CPU time is the ingest's own cost (decode, with
FFmpeg's threads, and the windows), and objects on, where `Window.objects_s` is the CPU time spent
finding objects (grey at <= 120 rows, frame difference, DIS flow, components; one thread). Reported per
window and per second of footage; `objects_vs_ingest` is their ratio. Sources: a UCSD Ped2 training
clip (360x240, 10 fps), and benchmarks/ingest.py's generated 720p25 and 1080p30 scenes. Scoring (main
process): a normality model learned from the Ped2 training clips scores each window's objects (k-NN).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

from engines.spec import DEFAULT_MODEL, load_spec
from streamer.detect.normality import NormalityModel
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import SourceReader, probe_geometry


def read(path: Path, seconds: float, objects: bool = True) -> tuple[list, float]:
    """The windows of the first `seconds` of a file, and the process CPU time it took."""
    geo = replace(probe_geometry(load_spec(DEFAULT_MODEL), 0.5), objects=objects)
    t0 = time.process_time()
    ws = []
    for w in SourceReader(str(path), "bench", geo, SourceOptions()).windows():
        if w.end > seconds + 1e-6:
            break
        ws.append(w)
    return ws, time.process_time() - t0


def cost(name: str, path: Path, seconds: float) -> dict:
    plain, ingest = read(path, seconds, objects=False)
    ws, _ = read(path, seconds)
    footage = ws[-1].end - ws[0].start
    obj = sum(w.objects_s for w in ws)
    return {"source": name, "windows": len(ws), "footage_s": round(footage, 1),
            "ingest_cpu_ms_per_window": round(1000 * ingest / len(plain), 2),
            "objects_cpu_ms_per_window": round(1000 * obj / len(ws), 2),
            "ingest_cpu_ms_per_s": round(1000 * ingest / footage, 1), "objects_cpu_ms_per_s": round(1000 * obj / footage, 1),
            "objects_vs_ingest": round(obj / ingest, 2), "objects_per_window": round(float(np.mean([len(w.objects) for w in ws])), 1)}


def main() -> int:
    from benchmarks.ingest import make_media

    p = argparse.ArgumentParser(prog="python -m benchmarks.objects", description=__doc__)
    p.add_argument("--ped2", type=Path, default=Path("../shared/data/ucsd_ped2"))
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    train = sorted((args.ped2 / "train").glob("*.mp4"))
    rows = [cost("ped2 360x240@10", train[0], args.seconds)]
    for name in ("720p25", "1080p30"):
        rows.append(cost(name, make_media(name, args.seconds, bframes=False), args.seconds))
    clips = [[w.objects for w in read(t, 1e9)[0]] for t in train]
    nm = NormalityModel.fit(clips, load_spec(DEFAULT_MODEL).frames)
    wins = [o for c in clips for o in c]
    t0 = time.process_time()
    for o in wins:
        nm.score_window(o)
    score_ms = 1000 * (time.process_time() - t0) / len(wins)
    out = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version(), "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
           "date": date.today().isoformat(), "sources": rows,
           "score_ms_per_window": round(score_ms, 3), "bank_objects": int(len(nm.bank))}
    for r in rows:
        print(f"{r['source']:18} ingest {r['ingest_cpu_ms_per_window']:6.2f} ms/window ({r['ingest_cpu_ms_per_s']:6.1f} ms/s)  "
              f"objects {r['objects_cpu_ms_per_window']:6.2f} ms/window ({r['objects_cpu_ms_per_s']:6.1f} ms/s)  "
              f"ratio {r['objects_vs_ingest']:.2f}  {r['objects_per_window']:.1f} objects/window")
    print(f"scoring (main process): {score_ms:.3f} ms/window against {len(nm.bank)} normal objects")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
