"""INT8 pose model against the shipped float one, under the shipped heads: fight clip AP on the validation
split and ms per pose frame, side by side.

    python -m benchmarks.int8_pose --int8 .cache/movenet_multipose.int8.onnx [--data ../shared/data] [--json FILE]

The INT8 file comes from scripts/quantize_pose.py (ONNX Runtime static QDQ, calibrated on frames of the
fight training sources and the UCSD Ped2 training clips). For every validation clip of the fight set (the
project's split by source), its windows through the live ingest code, the pose frames of the shipped
model through each pose model (ONNX Runtime CPU, 1 thread, no pose cache), the people features and the
shipped `fight` head; a clip's score is its windows' maximum. Only the `fight` class reads the poses,
so it is the only class the INT8 pose model can change. The rule (issue #22): INT8 ships as the CPU
default only if no class loses more than 0.01 AP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from engines.pose import PoseRunner
from engines.spec import DEFAULT_MODEL, POSE_ONNX, load_spec
from streamer.ingest.clip import clip_windows

MAX_AP_LOSS = 0.01


def shipped_net():  # noqa: ANN201
    import torch

    from engines.model import Arch, FusionNet

    spec = load_spec(DEFAULT_MODEL)
    ckpt = torch.load(str(DEFAULT_MODEL.with_suffix(".pt")), weights_only=True)
    net = FusionNet(spec, Arch.from_dict(ckpt["arch"]))
    net.load_state_dict(ckpt["state_dict"], strict=False)
    return net.eval()


def clip_scores(net, runners: dict[str, PoseRunner], path: Path, spent: dict[str, float]) -> dict[str, float]:  # noqa: ANN001
    import torch

    ws = clip_windows(path, net.spec)
    idx = list(net.arch.pose_frames)
    audio = torch.from_numpy(np.stack([w.audio for w in ws]))
    am, vm = torch.tensor([w.audio_mask for w in ws]).reshape(-1, 1), torch.ones(len(ws), 1)
    fight = net.spec.classes.index("fight")
    out = {}
    with torch.no_grad():
        base = net.audio_features(audio)
        for name, runner in runners.items():
            t = time.perf_counter()
            poses = np.stack([runner.run(w.video[idx]) for w in ws])
            spent[name] += time.perf_counter() - t
            feats = {**base, "people": net.people(torch.from_numpy(poses))}
            out[name] = float(torch.sigmoid(net.logits(feats, am, vm)[:, fight]).max())
    return out


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import average_precision_score

    from streamer.train.data import read_clips

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--int8", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    net = shipped_net()
    runners = {"fp32": PoseRunner(POSE_ONNX, threads=1, cache_frames=0), "int8": PoseRunner(args.int8, threads=1, cache_frames=0)}
    clips = [c for c in read_clips(args.data, "fight") if c.split == "val"]
    spent = {k: 0.0 for k in runners}
    scores: dict[str, list[float]] = {k: [] for k in runners}
    for c in clips:
        for k, v in clip_scores(net, runners, args.data / "fight" / c.file, spent).items():
            scores[k].append(v)
    labels = [int(c.label == "fight") for c in clips]
    rows = {k: {"fight_clip_ap": round(float(average_precision_score(labels, scores[k])), 4),
                "ms_per_pose_frame": round(spent[k] / runners[k].computed * 1000, 1)} for k in runners}
    loss = rows["fp32"]["fight_clip_ap"] - rows["int8"]["fight_clip_ap"]
    doc = {"date": date.today().isoformat(), "machine": f"{os.cpu_count()} CPUs {platform.machine()}",
           "loadavg": round(os.getloadavg()[0], 2), "model_version": net.spec.version, "split": "fight validation",
           "clips": len(clips), "positives": sum(labels), "rows": rows, "fight_ap_loss": round(loss, 4),
           "speedup": round(rows["fp32"]["ms_per_pose_frame"] / rows["int8"]["ms_per_pose_frame"], 2),
           "ships_as_cpu_default": bool(loss <= MAX_AP_LOSS)}
    print(json.dumps(doc, indent=1))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
