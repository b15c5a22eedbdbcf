"""Evaluate a model on a labelled folder, through the same decode and windowing as live sources.

- Classification folder (`labels.csv` with `file,label`; audio or video files): every clip is cut into
  windows by `streamer.ingest.clip.clip_windows`, the model scores every window, and a clip's score
  per class is the max over its windows. See `classify_report` for how a clip's label is predicted.
- Anomaly folder (`train/*.mp4` normal footage, `test/*.mp4`, `test/labels.csv` with
  `file,frame,anomalous`): a per-camera normality model (streamer.detect.normality) is learned from
  the moving objects the ingest finds in the training windows, every test window is scored, and every
  decoded test frame gets the mean score of the windows that cover it; the result is the micro ROC AUC
  over all frames. The engine is not run: the normality model does not use it.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.feed import sigmoid
from engines.metrics import average_precision, roc_auc
from engines.spec import (
    DEFAULT_MODEL,
    INPUT_AUDIO,
    INPUT_AUDIO_MASK,
    INPUT_VIDEO,
    INPUT_VIDEO_MASK,
    OUTPUT_LOGITS,
    ModelSpec,
    load_spec,
)
from streamer.detect.normality import DEFAULT_FAR

log = logging.getLogger(__name__)

DEFAULT_HOP = 0.5




class EvalError(ValueError):
    """A folder that cannot be evaluated (missing files or columns, unknown labels). Not recoverable."""


# -- decoding -----------------------------------------------------------------------------------------

@dataclass
class ClipWindows:
    """The windows of one clip, stacked (video rows are zeros where the window has no video)."""

    path: str
    start: np.ndarray  # float [N]
    end: np.ndarray  # float [N]
    video: np.ndarray  # uint8 [N, T, H, W, 3]
    audio: np.ndarray  # float32 [N, S]
    video_mask: np.ndarray  # float32 [N]
    audio_mask: np.ndarray  # float32 [N]
    error: str | None = None

    def feed(self, rows: slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
        return {INPUT_VIDEO: np.ascontiguousarray(self.video[rows]), INPUT_AUDIO: np.ascontiguousarray(self.audio[rows]),
                INPUT_VIDEO_MASK: np.ascontiguousarray(self.video_mask[rows]),
                INPUT_AUDIO_MASK: np.ascontiguousarray(self.audio_mask[rows])}


def decode_clip(path: str | Path, spec: ModelSpec, hop: float = DEFAULT_HOP) -> ClipWindows:
    """All windows of one file by the live ingest code (`clip_windows`); errors are returned, not raised."""
    from streamer.ingest.clip import clip_windows

    shape = (spec.frames, spec.height, spec.width, 3)
    try:
        ws = clip_windows(path, spec, camera="eval", hop=hop)
    except Exception as e:  # noqa: BLE001 - one bad clip is reported by the caller, not fatal
        z = np.zeros(0, np.float32)
        return ClipWindows(str(path), z, z, np.zeros((0, *shape), np.uint8), np.zeros((0, spec.samples), np.float32),
                           z, z, f"{type(e).__name__}: {e}")
    video = np.stack([w.video if float(w.video_mask) > 0 else np.zeros(shape, np.uint8) for w in ws])
    return ClipWindows(
        str(path), np.array([w.start for w in ws]), np.array([w.end for w in ws]), video,
        np.stack([np.asarray(w.audio, np.float32) for w in ws]),
        np.array([w.video_mask for w in ws], np.float32), np.array([w.audio_mask for w in ws], np.float32),
    )


def _progress(it: Iterable, **kwargs) -> Iterable:
    """`it` with a tqdm progress bar when tqdm is installed (the `train` extra), else `it` as it is."""
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    return tqdm(it, **kwargs)


def _decode_job(args: tuple[int, str, ModelSpec, float]) -> tuple[int, ClipWindows]:
    i, path, spec, hop = args
    return i, decode_clip(path, spec, hop)


def decode_clips(paths: list[str], spec: ModelSpec, hop: float = DEFAULT_HOP, workers: int = 2,
                 progress: bool = False) -> Iterator[tuple[int, ClipWindows]]:
    """(index, windows) of every path, decoded in `workers` processes (in completion order)."""
    jobs = [(i, p, spec, hop) for i, p in enumerate(paths)]
    if workers <= 1 or len(paths) <= 1:
        it: Iterable[tuple[int, ClipWindows]] = map(_decode_job, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers)
        it = pool.imap_unordered(_decode_job, jobs, chunksize=4)
    if progress:
        it = _progress(it, total=len(jobs), desc="decode+score", unit="clip", mininterval=2.0)
    try:
        yield from it
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def run_model(runtime, clip: ClipWindows, batch: int = 16) -> np.ndarray:
    """Sigmoid scores [N, K] of every window of a clip."""
    scores = []
    for s in range(0, len(clip.start), batch):
        out = runtime.infer(clip.feed(slice(s, s + batch)))
        scores.append(sigmoid(out[OUTPUT_LOGITS]))
    return np.concatenate(scores).astype(np.float32)


# -- classification -----------------------------------------------------------------------------------

def read_classification_folder(folder: str | Path, filters: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Rows of `<folder>/labels.csv` (at least `file,label`), optionally only those whose columns
    equal `filters` (e.g. {"fold": "2"}); `file` is made absolute."""
    folder = Path(folder)
    path = folder / "labels.csv"
    if not path.is_file():
        raise EvalError(f"{path} not found: a classification folder holds labels.csv with file,label")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "label"} <= set(rows[0]):
        raise EvalError(f"{path}: needs columns file,label (has {', '.join(rows[0])})")
    for k, v in (filters or {}).items():
        if rows and k not in rows[0]:
            raise EvalError(f"{path}: no column {k!r} to filter on")
        rows = [r for r in rows if r[k] == v]
    if not rows:
        raise EvalError(f"{path}: no rows" + (f" matching {filters}" if filters else ""))
    for r in rows:
        r["path"] = str(folder / r["file"])
    return rows


def classify_report(labels: list[str], scores: np.ndarray, classes: tuple[str, ...], thresholds: dict[str, float],
                    negatives: Iterable[str] = ()) -> dict:
    """Clip-level metrics from clip scores [N, K] (columns in `classes` order).

    Labels that are model classes are positives; labels in `negatives` mean "none of the positive
    classes". A clip's prediction is the highest-scoring positive class among the labels present; when
    the folder has negative labels and no present positive class reaches its threshold, the prediction
    is "negative" (a clip labelled with any negative label is then right). Per label: AP of its score
    (for a negative label, 1 - the highest positive score), precision, recall and count.
    Returns {"n", "accuracy", "macro_f1", "per_class": {label: {"ap", "precision", "recall", "n"}}}.
    """
    negatives = [n for n in negatives if n]
    present = sorted(set(labels))
    unknown = [lab for lab in present if lab not in classes and lab not in negatives]
    if unknown:
        raise EvalError(f"labels {unknown} are neither model classes ({', '.join(classes)}) nor given with "
                        "--negative")
    pos = [lab for lab in present if lab in classes]
    neg = [lab for lab in present if lab in negatives]
    if not pos:
        raise EvalError("no label of the folder is a model class: nothing to score")
    cols = [classes.index(c) for c in pos]
    s = np.asarray(scores, np.float64)[:, cols]  # [N, P]
    thr = np.array([thresholds.get(c, 0.5) for c in pos])
    best = s.argmax(axis=1)
    pred = [pos[i] for i in best]
    if neg:
        passes = np.asarray((s >= thr).any(axis=1)).tolist()
        pred = [p if ok else "<negative>" for p, ok in zip(pred, passes)]
    truth = ["<negative>" if lab in neg else lab for lab in labels]
    correct = np.array([p == t for p, t in zip(pred, truth)])
    per_class: dict[str, dict] = {}
    f1s = []
    for lab in present:
        key = "<negative>" if lab in neg else lab
        y = np.array([t == lab for t in labels])
        if lab in neg:
            sc = 1.0 - s.max(axis=1)
            hit_pred = np.array([p == "<negative>" for p in pred])
            hit_true = np.array([t == "<negative>" for t in truth])
        else:
            sc = s[:, pos.index(lab)]
            hit_pred = np.array([p == key for p in pred])
            hit_true = y
        tp = float((hit_pred & hit_true & y).sum()) if lab in neg else float((hit_pred & y).sum())
        # precision of a negative label: among clips predicted negative, those carrying this label
        precision = tp / max(int(hit_pred.sum()), 1)
        recall = tp / max(int(y.sum()), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        f1s.append(f1)
        per_class[lab] = {"ap": _nan_to_none(average_precision(y, sc)), "precision": round(precision, 4),
                          "recall": round(recall, 4), "n": int(y.sum())}
    return {"n": len(labels), "accuracy": round(float(correct.mean()), 4),
            "macro_f1": round(float(np.mean(f1s)), 4), "per_class": per_class}


def _nan_to_none(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


@dataclass
class ClassifyResult:
    report: dict
    labels: list[str]
    scores: np.ndarray  # [N, K] clip scores (max over windows)
    failed: list[str] = field(default_factory=list)


def evaluate_classification(folder: str | Path, model: str | Path = DEFAULT_MODEL, negatives: Iterable[str] = (),
                            filters: dict[str, str] | None = None, backend: str = "onnxruntime",
                            hop: float = DEFAULT_HOP, workers: int = 2, threads: int = 0,
                            progress: bool = False) -> ClassifyResult:
    """Score every clip of a classification folder; see `classify_report` for the metrics."""
    from engines.runtime import open_runtime

    rows = read_classification_folder(folder, filters)
    negatives = list(negatives)
    spec = load_spec(model)
    scores = np.zeros((len(rows), len(spec.classes)), np.float32)
    ok = np.ones(len(rows), bool)
    failed: list[str] = []
    with open_runtime(model, backend=backend, threads=threads) as rt:
        for i, cw in decode_clips([r["path"] for r in rows], spec, hop, workers, progress):
            if cw.error or len(cw.start) == 0:
                ok[i] = False
                failed.append(f"{rows[i]['file']}: {cw.error or 'no windows'}")
                log.warning("skipping %s: %s", rows[i]["file"], cw.error or "no windows")
                continue
            scores[i] = run_model(rt, cw).max(axis=0)
    labels = [r["label"] for r, good in zip(rows, ok) if good]
    report = classify_report(labels, scores[ok], spec.classes, spec.thresholds, negatives)
    if failed:
        report["failed"] = len(failed)
    return ClassifyResult(report, labels, scores[ok], failed)


# -- anomaly ------------------------------------------------------------------------------------------

def frame_times(path: str | Path) -> np.ndarray:
    """Presentation time (s) of every decoded video frame, rebased like the live ingest (0 at the first
    timestamp of any stream)."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        times = [f.time for f in c.decode(vs)]
        firsts = [s.start_time * s.time_base for s in c.streams if s.start_time is not None and s.time_base]
    t = np.array([x if x is not None else np.nan for x in times], np.float64)
    if np.isnan(t).any():  # frames without a timestamp: continue at the stream's rate
        rate = 1.0 / float(vs.average_rate or 25)
        for i in range(len(t)):
            if np.isnan(t[i]):
                t[i] = (t[i - 1] + rate) if i else 0.0
    t0 = float(min(firsts)) if firsts else (t[0] if len(t) else 0.0)
    return t - min(t0, t[0] if len(t) else t0)


def frame_scores(times: np.ndarray, start: np.ndarray, end: np.ndarray, scores: np.ndarray,
                 agg: str = "mean") -> np.ndarray:
    """Score of each frame from the windows that contain its time (start <= t < end): their mean
    (default) or max; a frame no window covers takes the window whose middle is nearest."""
    out = np.empty(len(times), np.float64)
    mid = 0.5 * (start + end)
    for i, t in enumerate(times):
        m = (start <= t + 1e-6) & (t < end - 1e-6)
        if not m.any():
            out[i] = scores[int(np.argmin(np.abs(mid - t)))]
        else:
            out[i] = scores[m].max() if agg == "max" else scores[m].mean()
    return out


def clip_objects(path: str | Path, spec: ModelSpec, hop: float = DEFAULT_HOP) -> tuple[np.ndarray, np.ndarray, list]:
    """(start [N], end [N], objects of each window) of a file, through the live ingest code."""
    from streamer.ingest.clip import clip_windows

    ws = clip_windows(path, spec, camera="eval", hop=hop, objects=True)
    return np.array([w.start for w in ws]), np.array([w.end for w in ws]), [w.objects for w in ws]


def _objects_job(args: tuple[Path, ModelSpec, float]) -> tuple[np.ndarray, np.ndarray, list]:
    return clip_objects(*args)


def evaluate_anomaly(folder: str | Path, model: str | Path = DEFAULT_MODEL, hop: float = DEFAULT_HOP,
                     far: float = DEFAULT_FAR, workers: int = 2, progress: bool = False) -> dict:
    """Learn normal from `<folder>/train/*`, score every decoded frame of `<folder>/test/*`.

    Returns {"frames", "auc", ...}: micro ROC AUC over all labelled test frames, plus the alert rate
    at the calibrated threshold on normal and anomalous test frames. `model` sets the window geometry."""
    from streamer.detect.normality import NormalityModel

    folder = Path(folder)
    train = sorted(p for p in (folder / "train").glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    labels_path = folder / "test" / "labels.csv"
    if not train:
        raise EvalError(f"{folder / 'train'}: no video files (an anomaly folder has train/*.mp4)")
    if not labels_path.is_file():
        raise EvalError(f"{labels_path} not found (file,frame,anomalous)")
    with labels_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_file: dict[str, dict[int, int]] = {}
    for r in rows:
        by_file.setdefault(r["file"], {})[int(r["frame"])] = int(r["anomalous"])
    spec = load_spec(model)
    files = list(train) + [folder / "test" / Path(k).name if not (folder / k).is_file() else folder / k
                           for k in by_file]
    jobs = [(p, spec, hop) for p in files]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            it: Iterable = pool.imap(_objects_job, jobs)
            if progress:
                it = _progress(it, total=len(jobs), desc="anomaly", unit="clip")
            found = list(it)
    else:
        found = [_objects_job(j) for j in jobs]
    nm = NormalityModel.fit([f[2] for f in found[: len(train)]], spec.frames, camera=folder.name, far=far)
    ys, ss = [], []
    for (key, lab), p, (start, end, objs) in zip(by_file.items(), files[len(train):], found[len(train):]):
        fs = frame_scores(frame_times(p), start, end, nm.score(objs))
        idx = np.array(sorted(lab))
        if idx.max() >= len(fs):
            raise EvalError(f"{key}: labels reach frame {idx.max()}, but only {len(fs)} frames decode")
        ys.append(np.array([lab[i] for i in idx]))
        ss.append(fs[idx])
    y, s = np.concatenate(ys), np.concatenate(ss)
    alarm = s >= nm.threshold
    return {"frames": int(len(y)), "auc": round(roc_auc(y, s), 4), "anomalous_frames": int(y.sum()),
            "threshold": round(float(nm.threshold), 6), "far_target": far,
            "alert_rate_normal": round(float(alarm[y == 0].mean()), 4) if (y == 0).any() else None,
            "alert_rate_anomalous": round(float(alarm[y == 1].mean()), 4) if (y == 1).any() else None,
            "train_windows": nm.windows, "train_objects": nm.calibration["objects"]}


VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".webm", ".m4v", ".flv"}


NEGATIVES = {"urbansound8k": (), "fight": ("no_fight",), "glass_break": ("background",)}


def evaluate_all(data_dir: str | Path, model: str | Path = DEFAULT_MODEL, threads: int = 0, workers: int = 2,
                 progress: bool = True) -> dict:
    """Every benchmark of the default model on its validation split (the splits training uses):
    UrbanSound8K fold 2, the validation source videos/recordings of fight and glass_break, and UCSD
    Ped2 (normal learned from train/, frame AUC on test/)."""
    import tempfile

    from streamer.train.splits import write_split

    data_dir = Path(data_dir)
    out: dict = {"model": str(model), "version": load_spec(model).version, "classify": {}}
    with tempfile.TemporaryDirectory(prefix="streamer-val-") as tmp:
        for d, neg in NEGATIVES.items():
            folder = write_split(data_dir, d, Path(tmp))
            res = evaluate_classification(folder, model, negatives=neg, threads=threads, workers=workers,
                                          progress=progress)
            out["classify"][d] = res.report
            log.info("%s: %s", d, json.dumps(res.report))
    if (data_dir / "ucsd_ped2" / "train").is_dir():
        out["anomaly"] = evaluate_anomaly(data_dir / "ucsd_ped2", model, workers=workers, progress=progress)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m streamer.evaluate", description=evaluate_all.__doc__)
    p.add_argument("--data", type=Path, required=True, help="../shared/data")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout only)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    res = evaluate_all(args.data, args.model, threads=args.threads)
    text = json.dumps(res, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
