"""Fight on source videos never trained on: cross-validation grouped by source, the shipped model's people
features against a baseline model's video embedding, one protocol.

    python -m benchmarks.fight_sources [--data ../shared/data] [--baseline V4_DIR/fusion.onnx] [--json FILE]

All 193 clips of the fight set (31 source videos) are split into 6 folds by source video; per fold, a
logistic regression (C=0.3, classes balanced) is fit on the standardised per-window features of the other
folds and scores this fold's windows; a clip's score is its windows' maximum; clip AP and ROC AUC over all
clips, mean over 5 seeds of the fold split. Features: the shipped model's people features (MoveNet
MultiPose + engines/people.py), and with --baseline the video part of another model's `embedding` output
(for v4: MobileNetV2 mean + the 7x7 grid; `git show 58cbc04:engines/weights/fusion.onnx` and its
`fusion.json`, `fusion.yamnet.bin`, `fusion.mobilenet.bin` into one folder). Both are decoded by the live
ingest code at their own model's geometry. The classifier is the same for both, so the figure compares the
features, not the heads. Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np

from engines import spec as espec
from engines.feed import windows_feed
from streamer.ingest.clip import clip_windows

SEEDS, FOLDS, C = 5, 6, 0.3


def people_features(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from engines.model import FusionNet

    spec = espec.load_spec(espec.DEFAULT_MODEL)
    net = FusionNet(spec).eval()
    feats, clip = [], []
    with torch.inference_mode():
        for i, p in enumerate(paths):
            ws = clip_windows(p, spec)
            video = torch.from_numpy(np.stack([w.video for w in ws]))
            feats.append(net.people(net.poses(video)).numpy())
            clip += [i] * len(ws)
    return np.concatenate(feats), np.array(clip)


def embedding_features(model: Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    from engines.runtime.onnxruntime import OnnxRuntime

    feats, clip = [], []
    with OnnxRuntime(model) as rt:
        spec = rt.spec
        start = spec.embedding_layout.get("audio", [0, 1024])[1]  # the embedding after its audio part
        for i, p in enumerate(paths):
            ws = clip_windows(p, spec)
            feats.append(rt.infer(windows_feed(ws))[espec.OUTPUT_EMBEDDING][:, start:])
            clip += [i] * len(ws)
    return np.concatenate(feats), np.array(clip)


def grouped_cv(x: np.ndarray, clip: np.ndarray, label: np.ndarray, source: np.ndarray, seed: int) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sources = np.unique(source)
    score = np.zeros(len(label))
    for fold in np.array_split(np.random.default_rng(seed).permutation(sources), FOLDS):
        test = np.isin(source[clip], fold)
        m = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, class_weight="balanced"))
        m.fit(x[~test], label[clip][~test])
        s = m.predict_proba(x[test])[:, 1]
        for c in np.unique(clip[test]):
            score[c] = s[clip[test] == c].max()
    return float(average_precision_score(label, score)), float(roc_auc_score(label, score))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--baseline", type=Path, default=None, help="another model's ONNX file (e.g. v4) to compare")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    folder = args.data / "fight"
    with (folder / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [folder / r["file"] for r in rows]
    label = np.array([r["label"] == "fight" for r in rows], int)
    source = np.array([r["source_id"] for r in rows])
    sets = {f"people features of {espec.load_spec(espec.DEFAULT_MODEL).version}": people_features(paths)}
    if args.baseline:
        sets[f"video embedding of {espec.load_spec(args.baseline).version}"] = embedding_features(args.baseline, paths)
    results = {}
    for name, (x, clip) in sets.items():
        r = np.array([grouped_cv(x, clip, label, source, s) for s in range(SEEDS)])
        results[name] = {"dims": int(x.shape[1]), "clip_ap": round(float(r[:, 0].mean()), 3),
                         "clip_ap_sd": round(float(r[:, 0].std()), 3), "clip_auc": round(float(r[:, 1].mean()), 3)}
        print(f"{name}: {results[name]}", flush=True)
    doc = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.python_version()}",
           "clips": len(rows), "sources": int(len(np.unique(source))), "folds": FOLDS, "seeds": SEEDS,
           "classifier": f"logistic regression C={C}, balanced, standardised features", "results": results}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
