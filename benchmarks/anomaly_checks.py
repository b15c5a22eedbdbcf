"""Label-free checks of the anomaly model on UCSD Ped2's training clips (the labelled test clips unused).

    python -m benchmarks.anomaly_checks [--ped2 ../shared/data/ucsd_ped2] [--json FILE]   # ~3 min on 2 cores

Normal is learned from 8 of the 16 training clips (odd or even numbers) and the other 8 are scored:
- held-out normal windows over the threshold calibrated for 1% (and how many clips they are in);
- a textured figure (0.13 picture heights tall) pasted into each held-out clip from 30% of its length:
  `fast` along the walkway at 4x walking pace, `bike` at 2x, `lawn` down the lawn at walking pace, and
  the control `walk` along the walkway at walking pace. Per kind: frame AUC of the pasted frames against
  the rest of the same clips (frames scored as `streamer eval anomaly` does), and the share of pasted
  frames over the threshold.
Clips go through the live ingest code (`clip_windows` with objects), pasted ones re-encoded with x264.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engines.metrics import roc_auc
from engines.spec import DEFAULT_MODEL, load_spec
from streamer.detect.normality import NormalityModel
from streamer.evaluate import clip_objects, frame_scores, frame_times

FPS = 10
KINDS = {  # x, y of the figure (picture heights from the left, from the top) t seconds after it appears
    "fast": lambda t: (0.05 * 1.5 + 0.2 * t, 0.55),
    "bike": lambda t: (0.05 * 1.5 + 0.1 * t, 0.5),
    "lawn": lambda t: (0.45 * 1.5, 0.08 + 0.06 * t),
    "walk": lambda t: (0.05 * 1.5 + 0.05 * t, 0.5),
}


def paste(src: Path, dst: Path, kind: str, seed: int) -> np.ndarray:
    """Write `src` with a moving figure pasted in; returns 0/1 per frame (figure present)."""
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    h, w = frames[0].shape[:2]
    ph, pw = int(0.13 * h), int(0.07 * h)
    fig = np.random.default_rng(seed).integers(30, 90, (ph, pw, 3)).astype(np.uint8)
    if kind == "lawn":
        fig += 130  # light clothes: visible on the dark lawn
    lab = np.zeros(len(frames), int)
    t0 = int(len(frames) * 0.3)
    for i in range(t0, len(frames)):
        x, y = (int(v * h) for v in KINDS[kind]((i - t0) / FPS))
        if x + pw >= w or (kind == "lawn" and y + ph >= 0.4 * h):
            break
        frames[i][y : y + ph, x : x + pw] = fig
        lab[i] = 1
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt, vs.time_base = w, h, "yuv420p", Fraction(1, FPS)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return lab


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.anomaly_checks", description=__doc__)
    p.add_argument("--ped2", type=Path, default=Path("../shared/data/ucsd_ped2"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    spec = load_spec(DEFAULT_MODEL)
    train = sorted((args.ped2 / "train").glob("*.mp4"))
    normal = [clip_objects(t, spec) for t in train]
    pasted: dict[tuple[str, int], tuple] = {}
    with tempfile.TemporaryDirectory(prefix="streamer-checks-") as tmp:
        for k, src in enumerate(train):
            for kind in KINDS:
                dst = Path(tmp) / f"{kind}{k}.mp4"
                lab = paste(src, dst, kind, seed=k)
                pasted[kind, k] = (lab, frame_times(dst), clip_objects(dst, spec))
    out = []
    for half in (1, 0):
        learn = [k for k in range(len(train)) if (k + 1) % 2 == half]
        held = [k for k in range(len(train)) if (k + 1) % 2 != half]
        nm = NormalityModel.fit([normal[k][2] for k in learn], spec.frames, far=0.01)
        alerts = [nm.score(normal[k][2]) >= nm.threshold for k in held]
        res = {"learned_from": "odd" if half else "even", "threshold": round(nm.threshold, 3),
               "held_out_windows": int(sum(map(len, alerts))), "held_out_alerts": int(sum(a.sum() for a in alerts)),
               "clips_with_alerts": int(sum(a.any() for a in alerts))}
        for kind in KINDS:
            ys, ss = [], []
            for k in held:
                lab, times, (start, end, objs) = pasted[kind, k]
                ys.append(lab)
                ss.append(frame_scores(times[: len(lab)], start, end, nm.score(objs)))
            y, s = np.concatenate(ys), np.concatenate(ss)
            res[kind] = {"auc": round(roc_auc(y, s), 3), "pasted_alerting": round(float((s[y == 1] >= nm.threshold).mean()), 3)}
        out.append(res)
        print(json.dumps(res))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
