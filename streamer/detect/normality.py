"""Per-camera normality: the moving objects this camera usually sees, and how far a window's are from them.

Learned from the objects (streamer.detect.objects: where, how big, how fast and which way) of a camera's
own normal footage, which the ingest process finds in each window's sampled frames. An object's score
is its mean distance to its K nearest normal objects (features standardised over the normal ones); a
frame's score is that of its worst object (0 without moving objects); a window's score is the mean over
its frames (temporal smoothing over the window's second). A cyclist among pedestrians is an object
faster than any normal object in that place; a person on the lawn is an object where none walked.

The threshold is calibrated to a false-alarm rate: the normal footage is cut into contiguous blocks of
BLOCK_S seconds, every object is scored against the objects of the other folds of blocks (so never
against its own near-copies in the next frames), and the threshold is the (1 - far) quantile of the
windows' scores made from these out-of-block object scores.

Pipeline use::

    nm = NormalityModel.load(path)           # one file per camera
    score, cell = nm.score_window(objects)   # objects: Window.objects of one window
    alert = score >= nm.threshold            # alerts like a class called "anomaly"

numpy only, so the main process stays light.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamer.config import LEARN_MIN_WINDOWS

log = logging.getLogger(__name__)

FORMAT = "streamer.normality/2"  # /1: grid statistics of the engine's embedding (refused: learn again)
DEFAULT_FAR = 0.01
K = 3  # nearest normal objects an object's score averages over
MAX_BANK = 10000  # normal objects kept (a seeded subsample beyond that): bounds the scoring cost per window
FOLDS = LEARN_MIN_WINDOWS // 2  # calibration folds (out-of-block); a learning period has two windows per fold at least
BLOCK_S = 10.0  # seconds per calibration block
GRID = 7  # anomaly_cell: the worst object's cell in a GRID x GRID grid
FEATURES = ("x", "y", "w", "h", "vx", "vy", "speed", "p90", "fill")  # of an object: streamer.detect.objects
RELEARN = "learn it again with `streamer learn-normal --camera ID --from FILE_OR_URL`"


class NormalityError(ValueError):
    """A normality model that cannot be built or used (too little footage, an older file format)."""


def _check(objects: np.ndarray) -> np.ndarray:
    objects = np.asarray(objects, np.float64)
    if objects.size == 0:
        return np.zeros((0, 2 + len(FEATURES)))
    if objects.ndim != 2 or objects.shape[1] != 2 + len(FEATURES):
        raise NormalityError(f"object rows have {objects.shape[1]} values, expected {2 + len(FEATURES)} "
                             f"(frame time, slot, {', '.join(FEATURES)})")
    return objects


def _knn(q: np.ndarray, bank: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Mean distance from each query row [N, F] to its k nearest bank rows [M, F] -> [N]."""
    out = np.zeros(len(q), np.float32)
    if not len(q):
        return out
    k = min(k, len(bank))
    bt = np.ascontiguousarray(bank.T)  # [F, M]: a contiguous right-hand side is 3x faster to multiply
    bn = (bt * bt).sum(0)
    for s in range(0, len(q), chunk):
        qc = q[s : s + chunk]
        d2 = qc @ bt  # squared distances, in place: |q|^2 + |b|^2 - 2 q.b
        d2 *= -2.0
        d2 += bn
        d2 += (qc * qc).sum(1)[:, None]
        near = np.partition(d2, k - 1, axis=1)[:, :k]
        out[s : s + chunk] = np.sqrt(np.maximum(near, 0.0)).mean(1)
    return out


def window_score(objects: np.ndarray, dist: np.ndarray, frames: int) -> tuple[float, int]:
    """A window's score from its objects' distances: the mean over its frames of the worst object of each
    (slot column 1); and the row of the worst object (-1 without objects)."""
    if not len(objects):
        return 0.0, -1
    slots = objects[:, 1].astype(np.int64)
    worst = np.zeros(max(frames, int(slots.max()) + 1), np.float32)
    np.maximum.at(worst, slots, dist)
    return float(worst.sum() / max(frames, 1)), int(np.argmax(dist))


@dataclass
class NormalityModel:
    camera: str
    frames: int  # frames per window
    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    bank: np.ndarray  # [M, F], standardised
    threshold: float
    far: float
    windows: int  # normal windows learned from
    calibration: dict[str, float]
    k: int = K
    _seen: dict[bytes, float] = field(default_factory=dict, repr=False, compare=False)  # the last call's objects

    # -- fitting ---------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, clips: Sequence[Sequence[np.ndarray]], frames: int, camera: str = "", far: float = DEFAULT_FAR,
            k: int = K, max_bank: int = MAX_BANK, seed: int = 0) -> NormalityModel:
        """Learn from normal footage: per clip, the `Window.objects` of its consecutive windows."""
        if not 0.0 < far < 1.0:
            raise NormalityError(f"far must be in (0, 1), got {far}")
        wins = [[_check(o) for o in clip] for clip in clips]
        n = sum(len(c) for c in wins)
        if n < 2 * FOLDS:
            raise NormalityError(f"{n} normal windows are too few: learn from at least {2 * FOLDS} "
                                 f"(about {FOLDS} s of footage at the default hop)")
        # every object once (consecutive windows share frames): key (clip, frame time, features)
        flat = [o for clip in wins for o in clip]
        tagged = np.concatenate([np.c_[np.full(len(o), ci), o[:, :1], o[:, 2:]] for ci, clip in enumerate(wins) for o in clip])
        uniq, inverse = np.unique(tagged, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(uniq) < 2 * FOLDS:
            raise NormalityError(f"{len(uniq)} moving objects in {n} normal windows are too few to learn what "
                                 "moves normally: learn from footage with people or vehicles in it")
        x = uniq[:, 2:]
        mean, scale = x.mean(0), np.maximum(x.std(0), 1e-6)
        z = ((x - mean) / scale).astype(np.float32)
        oof = _out_of_block(uniq[:, 0], uniq[:, 1], z, k, max_bank, seed)
        ends = np.cumsum([len(o) for o in flat])  # each window's rows in `inverse`
        scores = np.array([window_score(o, oof[inverse[e - len(o) : e]], frames)[0] for o, e in zip(flat, ends)])
        threshold = float(np.quantile(scores, 1.0 - far))
        model = cls(camera, frames, mean.astype(np.float32), scale.astype(np.float32), _subsample(z, max_bank, seed),
                    threshold, far, n, {"out_of_block_p50": float(np.median(scores)),
                                        "out_of_block_p99": float(np.quantile(scores, 0.99)), "objects": int(len(z))}, k)
        log.info("normality for camera %s: %d windows, %d objects, threshold %.3f at false-alarm rate %g",
                 camera or "?", n, len(z), threshold, far)
        return model

    # -- scoring ---------------------------------------------------------------------------------------
    def object_scores(self, objects: np.ndarray) -> np.ndarray:
        """[n]: each object's mean distance to its K nearest normal objects. The objects of the previous call
        are remembered: consecutive windows share half their frames, each object is searched for once."""
        x = _check(objects)
        keys = [r.tobytes() for r in np.delete(x, 1, axis=1)]  # frame time and features, not the slot
        seen = self._seen
        new = [i for i, key in enumerate(keys) if key not in seen]
        d = np.array([seen.get(key, 0.0) for key in keys], np.float32)
        if new:
            z = ((x[new, 2:] - self.mean) / self.scale).astype(np.float32)
            d[new] = _knn(z, self.bank, self.k)
        self._seen = dict(zip(keys, d.tolist()))
        return d

    def score_window(self, objects: np.ndarray) -> tuple[float, tuple[int, int] | None]:
        """A window's score (alert when >= `threshold`) and the (row, column) of its worst object's cell."""
        objects = _check(objects)
        score, worst = window_score(objects, self.object_scores(objects), self.frames)
        if worst < 0:
            return score, None
        x, y = objects[worst, 2], objects[worst, 3]
        return score, (min(int(y * GRID), GRID - 1), min(int(x * GRID), GRID - 1))

    def score(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """float [B]: the scores of several windows' objects."""
        return np.array([self.score_window(o)[0] for o in windows], np.float64)

    @property
    def grid(self) -> int:
        """G of the G x G grid `anomaly_cell` is given in."""
        return GRID

    # -- files -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One `.npz` file (arrays + JSON metadata); written atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "camera": self.camera, "frames": self.frames, "features": list(FEATURES),
                "k": self.k, "threshold": self.threshold, "far": self.far, "windows": self.windows,
                "calibration": self.calibration}
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), mean=self.mean, scale=self.scale, bank=self.bank)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NormalityModel:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                mean, scale, bank = z["mean"], z["scale"], z["bank"]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise NormalityError(f"cannot read normality model {path}: {str(e) or type(e).__name__}") from e
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt == "streamer.normality/1":
            raise NormalityError(f"{path} is a normality model of an older kind ({fmt}, grid statistics of the "
                                 f"engine's embedding); {RELEARN}")
        if fmt != FORMAT:
            raise NormalityError(f"{path}: not a normality model (format {fmt!r}, expected {FORMAT})")
        if meta.get("features") != list(FEATURES) or bank.shape[1:] != (len(FEATURES),):
            raise NormalityError(f"{path}: learned on other object features ({meta.get('features')}); {RELEARN}")
        try:
            return cls(meta["camera"], int(meta["frames"]), mean, scale, bank, float(meta["threshold"]),
                       float(meta["far"]), int(meta["windows"]), meta.get("calibration", {}), int(meta["k"]))
        except (KeyError, TypeError, ValueError) as e:
            raise NormalityError(f"{path}: incomplete normality model ({type(e).__name__}: {e})") from e


def _out_of_block(clip: np.ndarray, t: np.ndarray, z: np.ndarray, k: int, max_bank: int, seed: int) -> np.ndarray:
    """Each object's score against the objects of the other folds of BLOCK_S-second blocks."""
    _, block = np.unique(np.c_[clip, np.floor(t / BLOCK_S)], axis=0, return_inverse=True)
    block = block.reshape(-1)
    nblocks = int(block.max()) + 1
    fold = block % FOLDS if nblocks >= FOLDS else np.argsort(np.argsort(t, kind="stable")) * FOLDS // len(t)
    oof = np.zeros(len(z), np.float32)
    for f in range(FOLDS):
        held, rest = fold == f, fold != f
        if held.any() and rest.any():
            oof[held] = _knn(z[held], _subsample(z[rest], max_bank, seed + f), k)
    return oof


def _subsample(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    if len(z) <= k:
        return z
    idx = np.sort(np.random.default_rng(seed).choice(len(z), size=k, replace=False))
    return z[idx]


def camera_path(out_dir: str | Path, camera: str) -> Path:
    """Where a camera's normality model lives: `<out_dir>/<camera>.npz` (the id made file-safe)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in camera) or "camera"
    return Path(out_dir) / f"{safe}.npz"


class NormalityLearner:
    """An automatic learning period at first start: collect a camera's windows' objects until `windows`
    have arrived, then fit, save to `path` and return the model (None until then).

        learner = NormalityLearner("cam1", frames=8, windows=1200, path=camera_path(dir, "cam1"))
        model = learner.add(window.objects)  # per window; a NormalityModel once learned
    """

    def __init__(self, camera: str, frames: int, windows: int, path: str | Path | None = None,
                 far: float = DEFAULT_FAR) -> None:
        if windows < 2 * FOLDS:
            raise NormalityError(f"a learning period needs at least {2 * FOLDS} windows, got {windows}")
        self.camera, self.frames, self.windows, self.far = camera, frames, windows, far
        self.path = Path(path) if path is not None else None
        self._wins: list[np.ndarray] = []
        self.model: NormalityModel | None = None

    @property
    def progress(self) -> float:
        return 1.0 if self.model is not None else min(1.0, len(self._wins) / self.windows)

    def add(self, objects: np.ndarray) -> NormalityModel | None:
        if self.model is not None:
            return self.model
        self._wins.append(_check(objects))
        if len(self._wins) < self.windows:
            return None
        self.model = NormalityModel.fit([self._wins], self.frames, camera=self.camera, far=self.far)
        n = len(self._wins)
        self._wins = []
        if self.path is not None:
            self.model.save(self.path)
            log.info("camera %s: learned normal from %d windows, saved %s", self.camera, n, self.path)
        return self.model
