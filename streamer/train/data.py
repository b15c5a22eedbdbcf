"""Training data: the labelled folders of ../shared/data, decoded into windows by the live ingest code,
split by source, cached as .npz.

Decoding goes through `streamer.ingest.clip.clip_windows`, the same decode and windowing as live
sources, so training sees exactly what the engine will see. The cache key covers the window geometry
and the ingest source code, so a change to either re-decodes.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import multiprocessing as mp
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.spec import ModelSpec

log = logging.getLogger(__name__)

URBAN_CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)
CLASSES = URBAN_CLASSES + ("glass_break", "fight")
# label in a dataset -> class name, or None for a negative (all-zero target)
LABEL_MAP: dict[str, dict[str, str | None]] = {
    "urbansound8k": {c: c for c in URBAN_CLASSES},
    "glass_break": {"glass_break": "glass_break", "background": None},
    "fight": {"fight": "fight", "no_fight": None},
    # anomaly folder: its normal training footage (pedestrians walking) is extra "no event" video
    "ucsd_ped2": {"normal": None},
}
LABELLED = ("urbansound8k", "glass_break", "fight")
HOP_SECONDS = 0.5
VAL_FRACTION = 0.2
REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO / ".cache" / "windows"


@dataclass
class Clip:
    dataset: str
    file: str  # relative to the dataset folder
    label: str
    source_id: str
    split: str  # "train" | "val"


@dataclass
class WindowSet:
    """All decoded windows of one dataset (arrays aligned on the first axis, video only where present)."""

    dataset: str
    clips: list[Clip]
    clip: np.ndarray  # int32 [N], index into clips
    start: np.ndarray  # float32 [N]
    audio: np.ndarray  # float32 [N, S]
    video_mask: np.ndarray  # float32 [N]
    audio_mask: np.ndarray  # float32 [N]
    video_row: np.ndarray  # int32 [N], row of `video` or -1
    video: np.ndarray  # uint8 [Nv, T, H, W, 3]
    failed: list[str] = field(default_factory=list)
    label_map: dict[str, str | None] | None = None  # label -> class (None: negative); default LABEL_MAP[dataset]

    def __len__(self) -> int:
        return len(self.clip)

    def targets(self, classes: tuple[str, ...] = CLASSES) -> np.ndarray:
        """float32 [N, K] multi-label targets (negatives all zero)."""
        idx = {c: i for i, c in enumerate(classes)}
        per_clip = np.zeros((len(self.clips), len(classes)), np.float32)
        for i, c in enumerate(self.clips):
            name = (self.label_map or LABEL_MAP[c.dataset])[c.label]
            if name is not None:
                per_clip[i, idx[name]] = 1.0
        return per_clip[self.clip]


def _split_sources(rows: list[dict[str, str]], seed: int, frac: float = VAL_FRACTION) -> set[str]:
    """Pick validation source_ids: shuffled (seeded), added until `frac` of the clips, and every label
    of the dataset present on both sides."""
    by_src: dict[str, list[str]] = {}
    for r in rows:
        by_src.setdefault(r["source_id"], []).append(r["label"])
    labels = {r["label"] for r in rows}
    srcs = sorted(by_src)
    for attempt in range(100):
        rng = np.random.default_rng(seed + attempt)
        order = [srcs[i] for i in rng.permutation(len(srcs))]
        val: set[str] = set()
        n = 0
        for s in order:
            if n >= frac * len(rows):
                break
            val.add(s)
            n += len(by_src[s])
        val_labels = {lab for s in val for lab in by_src[s]}
        train_labels = {lab for s in srcs if s not in val for lab in by_src[s]}
        if val_labels == labels and train_labels == labels:
            return val
    raise ValueError("could not split sources with every label on both sides")


def read_clips(data_dir: Path, dataset: str, seed: int = 0) -> list[Clip]:
    """Rows of `<data_dir>/<dataset>/labels.csv` with a train/val split by source_id.

    urbansound8k: fold 2 is validation, fold 1 training. ucsd_ped2: the normal `train/*.mp4` clips, all
    training (its test clips are for the anomaly evaluation only). Others: ~20% of source_ids, seeded.
    """
    if dataset == "ucsd_ped2":
        files = sorted((data_dir / dataset / "train").glob("*.mp4"))
        return [Clip(dataset, f"train/{f.name}", "normal", f.stem, "train") for f in files]
    path = data_dir / dataset / "labels.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    unknown = {r["label"] for r in rows} - set(LABEL_MAP[dataset])
    if unknown:
        raise ValueError(f"{path}: unknown labels {sorted(unknown)}")
    if dataset == "urbansound8k":
        splits = ["val" if r["fold"] == "2" else "train" for r in rows]
    else:
        val = _split_sources(rows, seed)
        splits = ["val" if r["source_id"] in val else "train" for r in rows]
    return [Clip(dataset, r["file"], r["label"], r["source_id"], s) for r, s in zip(rows, splits)]


def _ingest_fingerprint() -> str:
    import streamer.ingest

    h = hashlib.sha256()
    for p in sorted(Path(streamer.ingest.__file__).parent.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    win = REPO / "streamer" / "window.py"
    if win.is_file():
        h.update(win.read_bytes())
    return h.hexdigest()[:12]


def _files_fingerprint(root: Path, files: list[str]) -> bytes:
    """Where the files are, and their sizes and modification times: a changed or moved file re-decodes."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for f in files:
        st = (root / f).stat() if (root / f).exists() else None
        h.update(f"{f}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
    return h.digest()


def cache_path(data_dir: Path, dataset: str, spec: ModelSpec, cache_dir: Path = CACHE_DIR) -> Path:
    h = hashlib.sha256()
    h.update(f"{spec.frames}x{spec.height}x{spec.width}|{spec.samples}|{spec.sample_rate}|{HOP_SECONDS}".encode())
    labels = data_dir / dataset / "labels.csv"
    if labels.is_file():
        h.update(labels.read_bytes())
    else:
        for c in read_clips(data_dir, dataset):
            h.update(c.file.encode())
    h.update(_files_fingerprint(data_dir / dataset, [c.file for c in read_clips(data_dir, dataset)]))
    h.update(_ingest_fingerprint().encode())
    return cache_dir / f"{dataset}-{h.hexdigest()[:16]}.npz"


def _decode_one(args: tuple[int, str, ModelSpec]) -> tuple[int, list[tuple], str | None]:
    from streamer.ingest.clip import clip_windows

    i, path, spec = args
    try:
        wins = clip_windows(path, spec, camera="clip", hop=HOP_SECONDS)
    except Exception as e:  # noqa: BLE001 - one bad clip must not stop a dataset; the caller reports it
        return i, [], f"{path}: {type(e).__name__}: {e}"
    out = []
    for w in wins:
        vm, am = float(w.video_mask), float(w.audio_mask)
        out.append((w.start, np.asarray(w.audio, np.float32), vm, am, w.video if vm > 0 else None))
    return i, out, None


def decode_dataset(
    data_dir: Path, dataset: str, spec: ModelSpec, workers: int = 2, seed: int = 0, cache_dir: Path = CACHE_DIR
) -> WindowSet:
    """Windows of one dataset, from the cache when it is current, else decoded (with a progress bar)."""
    clips = read_clips(data_dir, dataset, seed)
    return decode_clips(clips, data_dir / dataset, dataset, spec, cache_path(data_dir, dataset, spec, cache_dir),
                        workers)


def decode_clips(clips: list[Clip], root: Path, dataset: str, spec: ModelSpec, cp: Path,
                 workers: int = 2) -> WindowSet:
    """Windows of `clips` (files relative to `root`), cached at `cp`."""
    if cp.is_file():
        with np.load(cp, allow_pickle=False) as z:
            log.info("%s: %d windows from cache %s", dataset, len(z["clip"]), cp)
            return WindowSet(
                dataset, clips, z["clip"], z["start"], z["audio"], z["video_mask"], z["audio_mask"],
                z["video_row"], z["video"], [str(s) for s in z["failed"]],
            )
    results, failed = _decode_all(clips, root, dataset, spec, workers)
    ws = _window_set(dataset, clips, results, failed, spec)
    cp.parent.mkdir(parents=True, exist_ok=True)
    tmp = cp.with_name(cp.stem + ".tmp.npz")
    np.savez(
        tmp, clip=ws.clip, start=ws.start, audio=ws.audio, video_mask=ws.video_mask,
        audio_mask=ws.audio_mask, video_row=ws.video_row, video=ws.video, failed=np.array(failed, str),
    )
    tmp.replace(cp)
    log.info("%s: decoded %d clips into %d windows (%d failed), cached at %s",
             dataset, len(clips), len(ws), len(failed), cp)
    return ws


def _decode_all(clips: list[Clip], root: Path, dataset: str, spec: ModelSpec,
                workers: int) -> tuple[dict[int, list[tuple]], list[str]]:
    """Every clip decoded on `workers` processes: its windows by clip index, and the clips that failed."""
    from tqdm import tqdm

    jobs = [(i, str(root / c.file), spec) for i, c in enumerate(clips)]
    results: dict[int, list[tuple]] = {}
    failed: list[str] = []
    ctx = mp.get_context("spawn")  # never fork a process that may hold torch/OpenMP threads
    with ctx.Pool(max(1, workers)) as pool:
        for i, wins, err in tqdm(
            pool.imap_unordered(_decode_one, jobs, chunksize=8), total=len(jobs), desc=f"decode {dataset}",
            unit="clip",
        ):
            if err:
                failed.append(err)
                log.warning("skipping clip: %s", err)
            results[i] = wins
    return results, failed


def _window_set(dataset: str, clips: list[Clip], results: dict[int, list[tuple]], failed: list[str],
                spec: ModelSpec) -> WindowSet:
    """The decoded windows in clip order as one WindowSet (video only for the windows that have it)."""
    clip_idx: list[int] = []
    starts: list[float] = []
    audio: list[np.ndarray] = []
    vms: list[float] = []
    ams: list[float] = []
    vrows: list[int] = []
    videos: list[np.ndarray] = []
    for i in range(len(clips)):
        for start, a, vm, am, v in results.get(i, []):
            clip_idx.append(i)
            starts.append(start)
            audio.append(a)
            vms.append(vm)
            ams.append(am)
            if v is not None:
                vrows.append(len(videos))
                videos.append(v)
            else:
                vrows.append(-1)
    video = (
        np.stack(videos) if videos else np.zeros((0, spec.frames, spec.height, spec.width, 3), np.uint8)
    )
    return WindowSet(
        dataset, clips, np.array(clip_idx, np.int32), np.array(starts, np.float32),
        np.stack(audio).astype(np.float32), np.array(vms, np.float32), np.array(ams, np.float32),
        np.array(vrows, np.int32), video, failed,
    )


NEGATIVE_LABELS = ("background", "negative", "none", "normal", "other")


def is_negative(label: str) -> bool:
    """A label that means "none of the classes": background, negative, none, normal, other, or no_*."""
    return label.lower() in NEGATIVE_LABELS or label.lower().startswith("no_")


def read_folder(folder: Path, seed: int = 0, frac: float = VAL_FRACTION) -> tuple[list[Clip], dict[str, str | None]]:
    """A user's classification folder (`labels.csv`: file,label[,source_id]) as clips split by source
    (the file itself when there is no source_id), and its label map (negative labels -> None)."""
    path = folder / "labels.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: needs a header with file,label[,source_id] and at least one row")
    missing = [r["file"] for r in rows if not (folder / r["file"]).is_file()]
    if missing:
        raise ValueError(f"{path}: {len(missing)} files not found, first: {folder / missing[0]}")
    for r in rows:
        r.setdefault("source_id", "")
        r["source_id"] = r["source_id"] or r["file"]
    label_map = {lab: (None if is_negative(lab) else lab) for lab in sorted({r["label"] for r in rows})}
    if not any(label_map.values()):
        raise ValueError(f"{path}: every label is a negative ({', '.join(label_map)}): nothing to learn")
    try:
        val = _split_sources(rows, seed, frac)
    except ValueError:
        val = set()  # too few sources to hold some of every label out: train on all
    name = folder.name or "folder"
    return [Clip(name, r["file"], r["label"], r["source_id"], "val" if r["source_id"] in val else "train")
            for r in rows], label_map


def folder_cache_path(folder: Path, spec: ModelSpec, cache_dir: Path = CACHE_DIR) -> Path:
    h = hashlib.sha256(f"{spec.frames}x{spec.height}x{spec.width}|{spec.samples}|{HOP_SECONDS}".encode())
    h.update((folder / "labels.csv").read_bytes())
    h.update(_files_fingerprint(folder, [c.file for c in read_folder(folder)[0]]))
    h.update(_ingest_fingerprint().encode())
    return cache_dir / f"folder-{folder.name}-{h.hexdigest()[:16]}.npz"
