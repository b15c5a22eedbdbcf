"""`streamer train --data DIR [--out OUT] [--name NAME] [--minutes N]`

Trains the heads of the fusion model on the frozen pretrained backbones and exports one ONNX graph
(`OUT/NAME.onnx`, its sidecar `OUT/NAME.json` with classes and thresholds, `OUT/NAME.pt` with the
trained part for the torch backend, `OUT/NAME.metrics.json`). DIR is either
- a classification folder of your own (`labels.csv`: file,label[,source_id]; audio or video files;
  labels such as `background`, `none`, `normal` or `no_*` are negatives): the model has your classes;
- a folder holding urbansound8k/, glass_break/, fight/ (and optionally ucsd_ped2/), as ../shared/data:
  the default model (12 trained classes plus the AudioSet classes mapped from the audio backbone).

Thresholds are set per class for at most `--alerts-per-hour` false alerts per camera-hour on the
normal footage of the training split, scored out of fold (each clip by heads that never saw it).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engines.spec import WEIGHTS_DIR, ModelSpec
from streamer.train.data import WindowSet

log = logging.getLogger(__name__)

# classes taken from the audio backbone: class -> AudioSet display names (max of their logits)
MAPPED = {
    "scream": ["Screaming"],
    "explosion": ["Explosion"],
    "smoke_alarm": ["Smoke detector, smoke alarm", "Fire alarm"],
    "shatter": ["Shatter", "Breaking"],
    "car_alarm": ["Car alarm"],
}
# labelled classes whose clips are no false alert of a mapped class
FOLDS = 5
DEFAULT_RATE = 1.0


@dataclass
class Part:
    """One dataset: its windows, features, table over the model's classes, and per-window split."""

    name: str
    ws: WindowSet
    table: object  # streamer.train.fit.Table
    split: np.ndarray  # [N] "train" | "val"
    labels: list[str]  # per clip: its class, or "" for a negative
    offset: int = 0  # global clip id of its first clip (table.clip = ws.clip + offset)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamer train", description=__doc__.split("\n\n")[1])
    p.add_argument("--data", type=Path, default=None, help="a classification folder, or the dataset folders")
    p.add_argument("--card-only", action="store_true",
                   help="only rewrite the model card from OUT/NAME.metrics.json (and NAME.eval.json)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: engines/weights for the "
                   "default recipe in a source checkout, else ./models)")
    p.add_argument("--name", default=None, help="model name, the file stem (default: fusion, or the folder name)")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget of the head training (default 10)")
    p.add_argument("--alerts-per-hour", type=float, default=DEFAULT_RATE,
                   help="false alerts per camera-hour on normal footage that the thresholds allow (default 1)")
    p.add_argument("--bench-seconds", type=float, default=5.0,
                   help="seconds of ONNX Runtime throughput measurement per batch size (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p


def _spec(name: str, classes: tuple[str, ...], modality: dict[str, str], mapped: dict[str, list[str]]) -> ModelSpec:
    from engines.backbones import yamnet_class_names
    from engines.model import Arch, embedding_dim

    names = yamnet_class_names()
    return ModelSpec(name=name, classes=classes + tuple(mapped),  # the window geometry: ModelSpec's defaults
                     modality={**modality, **{c: "audio" for c in mapped}},
                     audioset={c: [names.index(n) for n in ns] for c, ns in mapped.items()},
                     audioset_names={c: list(ns) for c, ns in mapped.items()},
                     embedding_dim=embedding_dim(Arch()))


def recipe_parts(data: Path, spec: ModelSpec, seed: int, workers: int) -> list[Part]:
    from streamer.train import recipe

    parts, offset = [], 0
    for d in ("urbansound8k", "glass_break", "fight", "ucsd_ped2"):
        if d == "ucsd_ped2" and not (data / d / "train").is_dir():
            continue
        ws, feats = recipe.load(data, d, spec, seed=seed, workers=workers)
        t = recipe.table(ws, feats, spec.classes, offset)
        split = np.array([c.split for c in ws.clips])[ws.clip]
        parts.append(Part(d, ws, t, split, recipe.label_of(ws), offset))
        offset += len(ws.clips)
    # urbansound8k's training windows once more, mixed into the training split's normal audio
    # (glass_break background, no_fight audio) at 0-20 dB SNR: on the inner split (US8K fold 1 by source),
    # the audio heads alone went from 0.608 to 0.665 clip accuracy
    by = {p.name: p for p in parts}
    us = by["urbansound8k"]
    normal = [p.ws.audio[(p.split == "train") & (p.ws.audio_mask > 0) & np.array([lab == "" for lab in p.labels])[p.ws.clip]]
              for p in parts if p.name in ("glass_break", "fight")]
    backgrounds = np.concatenate(normal) if normal else np.zeros((0, spec.samples), np.float32)
    rows = np.flatnonzero((us.split == "train") & (us.ws.audio_mask > 0))
    if len(backgrounds) and len(rows):
        t = recipe.augmented(us.table, us.ws.audio, rows, backgrounds, spec, us.offset, offset, seed)
        parts.append(Part("urbansound8k_augmented", us.ws, t, np.full(len(rows), "train"), us.labels, offset))
    return parts


def folder_parts(folder: Path, spec_geometry: ModelSpec, seed: int, workers: int) -> tuple[list[Part], tuple[str, ...],
                                                                                            dict[str, str]]:
    from streamer.train.data import decode_clips, folder_cache_path, read_folder
    from streamer.train.features import dataset_features
    from streamer.train.fit import Table

    clips, label_map = read_folder(folder, seed)
    cp = folder_cache_path(folder, spec_geometry)
    ws = decode_clips(clips, folder, clips[0].dataset, spec_geometry, cp, workers)
    ws.label_map = label_map
    if ws.failed:
        log.warning("%d clips could not be decoded (first: %s)", len(ws.failed), ws.failed[0])
    classes = tuple(sorted({c for c in label_map.values() if c}))
    modality = {}
    for c in classes:
        rows = np.array([label_map[cl.label] == c for cl in ws.clips])[ws.clip]
        has_a, has_v = ws.audio_mask[rows].max(initial=0) > 0, ws.video_mask[rows].max(initial=0) > 0
        modality[c] = "any" if has_a and has_v else "audio" if has_a else "video"
    feats = dataset_features(ws, spec_geometry, key=cp.stem)
    y = ws.targets(classes)
    t = Table(feats, ws.audio_mask.astype(np.float32), ws.video_mask.astype(np.float32), y,
              np.ones_like(y), ws.clip.astype(np.int64), np.ones(len(ws), np.float32))
    split = np.array([c.split for c in ws.clips])[ws.clip]
    labels = [label_map[c.label] or "" for c in ws.clips]
    return [Part(ws.dataset, ws, t, split, labels)], classes, modality


def clip_labels(parts: list[Part]) -> dict[int, str]:
    return {p.offset + i: lab for p in parts for i, lab in enumerate(p.labels)}


def _concat(parts: list[Part], split: str):
    from streamer.train.fit import Table

    return Table.concat([p.table.take(np.flatnonzero(p.split == split)) for p in parts])


def _per_clip(scores: np.ndarray, clip: np.ndarray) -> dict[int, np.ndarray]:
    """Window scores grouped by clip id, in window (time) order."""
    order = np.argsort(clip, kind="stable")
    ids, starts = np.unique(clip[order], return_index=True)
    return {int(i): scores[order[a:b]] for i, a, b in zip(ids, starts, [*starts[1:], len(order)])}


def out_of_fold(make_model, train, cfg, seconds: float, seed: int) -> np.ndarray:
    """Scores [N, K] of every training window from heads fit on the other folds (clips grouped)."""
    from streamer.train.fit import fit_heads, predict

    groups = train.groups()  # an augmented copy goes to the fold of its original
    ids = np.unique(groups)
    fold_of = dict(zip(ids, np.random.default_rng(seed).permutation(len(ids)) % FOLDS))
    fold = np.array([fold_of[g] for g in groups])
    out = None
    for k in range(FOLDS):
        m = make_model()
        fit_heads(m, train.take(np.flatnonzero(fold != k)), cfg, seconds=seconds)
        held = np.flatnonzero(fold == k)
        p = predict(m, train.take(held))
        out = np.zeros((len(train), p.shape[1]), np.float32) if out is None else out
        out[held] = p
        log.info("out-of-fold scores: fold %d of %d", k + 1, FOLDS)
    assert out is not None
    return out


def calibrate(spec: ModelSpec, trained: list[str], train, oof: np.ndarray, every, every_scores: np.ndarray,
              labels: dict[int, str], rate: float, points: dict, hours: dict) -> dict[str, float]:
    """Per class, the threshold for `rate` false alerts per hour on normal footage (clips of no class:
    glass_break `background`, `no_fight`, UCSD Ped2 normal, a folder's negatives) that can carry the
    class (its modality present): trained classes on the out-of-fold scores of the training split,
    AudioSet-mapped classes (never trained) on the normal clips of both splits."""
    from streamer.train.thresholds import alerts_per_hour, clip_recall, footage_hours, threshold_for_rate

    thr: dict[str, float] = {}
    need = {"audio": "am", "video": "vm"}
    for k, c in enumerate(spec.classes):
        t, s = (train, oof) if c in trained else (every, every_scores)
        normal = np.array([labels[int(i)] == "" for i in t.clip])
        m = spec.modality.get(c, "any")
        if m in need:
            normal &= getattr(t, need[m]) > 0
        clips = list(_per_clip(s[normal, k], t.clip[normal]).values())
        thr[c] = threshold_for_rate(clips, rate)
        if c in trained:
            pos = (t.defined[:, k] > 0) & (t.y[:, k] > 0)
            positives = list(_per_clip(s[pos, k], t.clip[pos]).values())
            points[c] = [{"threshold": round(x, 6), "recall": round(clip_recall(positives, x), 4),
                          "false_alerts_per_hour": round(alerts_per_hour(clips, x), 1)} for x in (0.5, thr[c])]
        hours[c] = round(footage_hours(clips), 4)
        log.info("threshold %s: %.4f (%s)", c, thr[c], "out of fold" if c in trained else "AudioSet-mapped")
    return thr


def validation_report(spec: ModelSpec, parts: list[Part], model, thresholds: dict[str, float]) -> dict:
    """Clip-level numbers on the validation split (never trained on): per class AP, recall at the
    threshold, false alerts per hour on its normal clips; urbansound8k accuracy; fight accuracy."""
    from engines.metrics import average_precision
    from streamer.train.fit import predict
    from streamer.train.thresholds import alerts_per_hour, clip_recall, footage_hours

    val = _concat(parts, "val")
    if len(val) == 0:
        return {}
    s = predict(model, val)
    labels = clip_labels(parts)
    rep: dict = {"classes": {}}
    need = {"audio": val.am > 0, "video": val.vm > 0}
    for k, c in enumerate(spec.classes):
        rows = val.defined[:, k] > 0 if c not in spec.audioset else np.ones(len(val), bool)
        rows = rows & need.get(spec.modality.get(c, "any"), np.ones(len(val), bool))
        by_clip = _per_clip(s[rows, k], val.clip[rows])
        pos = [v for i, v in by_clip.items() if labels[i] == c]
        neg = [v for i, v in by_clip.items() if labels[i] == ""]
        y = np.array([labels[i] == c for i in by_clip])
        sc = np.array([v.max() for v in by_clip.values()])
        rep["classes"][c] = {
            "threshold": thresholds[c], "val_positive_clips": len(pos), "val_negative_clips": len(neg),
            "ap": round(average_precision(y, sc), 4) if len(pos) else None,
            "recall": round(clip_recall(pos, thresholds[c]), 4) if pos else None,
            "false_alerts_per_hour": round(alerts_per_hour(neg, thresholds[c]), 2) if neg else None,
            "negative_hours": round(footage_hours(neg), 3)}
    for p in parts:
        if p.name == "urbansound8k":
            from streamer.train.data import URBAN_CLASSES

            m = p.split == "val"
            cols = [spec.classes.index(c) for c in URBAN_CLASSES]
            ps = predict(model, p.table.take(np.flatnonzero(m)))
            by = _per_clip(ps[:, cols], p.table.clip[m])
            pred = {i: URBAN_CLASSES[int(v.max(axis=0).argmax())] for i, v in by.items()}
            rep["urbansound8k_accuracy"] = round(float(np.mean([pred[i] == labels[i] for i in by])), 4)
            rep["urbansound8k_clips"] = len(by)
        if p.name == "fight" and "fight" in spec.classes:
            k = spec.classes.index("fight")
            m = p.split == "val"
            by = _per_clip(predict(model, p.table.take(np.flatnonzero(m)))[:, k], p.table.clip[m])
            hit = [(v.max() >= thresholds["fight"]) == (labels[i] == "fight") for i, v in by.items()]
            rep["fight_accuracy"] = round(float(np.mean(hit)), 4)
            rep["fight_clips"] = len(by)
    return rep


def export(model, spec: ModelSpec, out: Path, threads: int, bench_seconds: float = 5.0) -> dict:
    from engines.bench import measure_throughput
    from engines.export import check_parity, export_onnx, model_sha256, save_torch_weights, split_weights
    from engines.model import embedding_layout, set_static_output_dims
    from engines.runtime.onnxruntime import OnnxRuntime
    from engines.spec import save_spec

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{spec.name}.onnx"
    export_onnx(model, spec, path)
    layout = embedding_layout(spec, model.arch)
    set_static_output_dims(path, spec)
    parity = check_parity(model, path, spec, batches=(1, 3, 8))
    files = split_weights(path)  # YAMNet's weights read from backbones/yamnet.bin, never a copy (engines/shared.py)
    digest = model_sha256(path)[:12]
    spec = replace(spec, version=f"5.0.0+{digest}", embedding_layout=layout)
    model.spec = spec
    save_spec(spec, path)
    save_torch_weights(model, path)
    speed = {}
    for b in (1, 8) if bench_seconds > 0 else ():
        with OnnxRuntime(path, intra_op_threads=threads) as rt:
            speed[b] = round(measure_throughput(rt, b, seconds=bench_seconds), 1)
    return {"version": spec.version, "model_sha256_12": digest, "files": [f.name for f in files],
            "embedding_layout": layout,
            "parity": [p.__dict__ for p in parity], "ort_windows_per_s": speed}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.card_only:
        from streamer.train.card import write_card

        print(write_card(args.out or recipe_out(), args.name or "fusion"))
        return 0
    if args.data is None:
        print("error: --data is required: a classification folder or the dataset folders", file=sys.stderr)
        return 2
    try:
        return run(args, argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    import torch

    from engines.model import Arch, FusionNet
    from streamer.train.fit import FitConfig, fit_heads, predict

    t_start = time.time()
    torch.set_num_threads(max(1, args.threads))
    spec, parts, out, is_folder = _load(args)
    arch, cfg = Arch(), FitConfig(seed=args.seed)
    train = _concat(parts, "train")
    if len(train) == 0:
        raise ValueError(f"--data {args.data}: no training windows could be decoded")
    budget = max(1.0, args.minutes * 60.0)
    oof = out_of_fold(lambda: FusionNet(spec, arch), train, cfg, budget / (FOLDS + 1) / 1.0, args.seed)
    model = FusionNet(spec, arch)
    t0 = time.time()
    losses = fit_heads(model, train, cfg, progress=sys.stderr.isatty(), seconds=budget / (FOLDS + 1))
    fit_s = time.time() - t0
    every = type(train).concat([p.table for p in parts])
    points: dict[str, list] = {}  # out-of-fold operating points of the trained classes (training split)
    hours: dict[str, float] = {}  # hours of normal footage behind each threshold
    thresholds = calibrate(spec, model.trained, train, oof, every, predict(model, every), clip_labels(parts),
                           args.alerts_per_hour, points, hours)
    spec = replace(spec, thresholds=thresholds)
    model.spec = spec
    report = validation_report(spec, parts, model, thresholds)
    exported = export(model, spec, out, args.threads, args.bench_seconds)
    command = "streamer train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    metrics = {
        "recipe": "folder" if is_folder else "default", "classes": list(spec.classes),
        "arch": arch.to_dict(), "fit": cfg.__dict__, "epochs_run": len(losses), "final_loss": losses[-1],
        "fit_seconds": round(fit_s, 1), "wall_seconds": round(time.time() - t_start, 1),
        "train_windows": len(train), "train_clips": int(len(np.unique(train.clip))),
        "alerts_per_hour_target": args.alerts_per_hour, "validation": report, "command": command,
        "operating_points_oof": points, "calibration_hours": hours, **_size(model, spec),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} CPU threads", **exported,
    }
    _write_results(out, spec, metrics, report)
    return 0


def _load(args: argparse.Namespace) -> tuple[ModelSpec, list[Part], Path, bool]:
    """The model's spec, the decoded datasets, the output folder, and whether --data is a folder of your own."""
    from streamer.train import recipe

    data: Path = args.data
    is_folder = (data / "labels.csv").is_file()
    if not is_folder and not all((data / d / "labels.csv").is_file() for d in ("urbansound8k", "glass_break", "fight")):
        raise ValueError(f"--data {data}: neither a classification folder (labels.csv) nor a folder with "
                         "urbansound8k/, glass_break/ and fight/")
    if is_folder:
        geometry = _spec("x", ("_",), {}, {})
        parts, classes, modality = folder_parts(data, geometry, args.seed, args.threads)
        spec = _spec(args.name or data.resolve().name, classes, modality, {})
        return spec, parts, args.out or Path("models"), True
    spec = _spec(args.name or "fusion", recipe.TRAINED, recipe.MODALITY, MAPPED)
    parts = recipe_parts(data, spec, args.seed, args.threads)
    return spec, parts, args.out or recipe_out(), False


def recipe_out(weights: Path = WEIGHTS_DIR) -> Path:
    """The default recipe's output folder: the package's weights in a source checkout (where the shipped
    model is made), else ./models (an installed package's folder is site-packages: not for writing)."""
    return weights if (weights.parents[1] / "pyproject.toml").is_file() else Path("models")


def _size(model, spec: ModelSpec) -> dict:
    from engines.model import count_macs, count_params

    return {"params_trained": int(sum(p.numel() for p in model.heads.parameters())),
            "params_total": count_params(model), "macs_per_window": count_macs(model, spec)}


def _write_results(out: Path, spec: ModelSpec, metrics: dict, report: dict) -> None:
    """NAME.metrics.json and the model card from it."""
    from streamer.train.card import write_card

    mp = out / f"{spec.name}.metrics.json"
    mp.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    write_card(out, spec.name)
    log.info("wrote %s (version %s): %s", out / f"{spec.name}.onnx", metrics["version"],
             json.dumps({k: v for k, v in report.items() if k != "classes"}))


if __name__ == "__main__":
    raise SystemExit(main())
