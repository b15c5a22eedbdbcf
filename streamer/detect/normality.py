"""Per-camera normality: what this camera's windows usually look like, and how far a window is from it.

Learned from the engine's `embedding` rows of a camera's own normal footage. When the model records a
spatial block in its embedding (a G x G grid of per-cell grey level and motion statistics; see
engines.model.embedding_layout), each cell is compared with the same cell of the normal windows: the
score of a window is the largest, over cells, distance to the nearest normal window in that cell (per
cell and feature standardised). That is what it takes to see one cyclist among pedestrians: a single
cell with a speed or an appearance that cell never had. Without a spatial block the learned embedding is
used as one vector (nearest-neighbour distance, standardised per dimension).

The threshold is calibrated to a false-alarm rate: the normal windows are cut into contiguous blocks, each
block is scored against the others (neighbouring windows overlap, so a window is never compared with its
own near-copy), and the threshold is the (1 - far) quantile of these out-of-block scores.

Pipeline use::

    nm = NormalityModel.load(path)          # one file per camera
    scores = nm.score(embedding_rows)       # float [B]
    alert = scores >= nm.threshold          # alerts like a class called "anomaly"

numpy only (no torch, no onnxruntime), so the main process stays light.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "streamer.normality/1"
DEFAULT_FAR = 0.01
DEFAULT_DIR = "~/.local/state/streamer/normality"  # per-camera models: <dir>/<camera>.npz
DEFAULT_FEATURES = ("intensity", "motion_mean")  # of the spatial block (engines.model.SPATIAL_FEATURES)
MAX_BANK = 6000  # normal windows kept (a seeded subsample beyond that)
FOLDS = 5
SCALE_FLOOR = 0.5
BLOCK = 20  # windows per calibration block (10 s at the default 0.5 s hop)


class NormalityError(ValueError):
    """A normality model that cannot be built or used (too little footage, wrong embedding width)."""


def model_layout(model_path: str | Path) -> dict[str, Any] | None:
    """The embedding layout of a model, from its sidecar (`<name>.json`); a model exported before the
    sidecar carried it has it in the ONNX metadata only. None when it has none."""
    from engines.spec import load_spec, read_layout

    return load_spec(model_path).embedding_layout or read_layout(model_path)


def _features(rows: np.ndarray, layout: dict[str, Any] | None, features: Sequence[str]) -> np.ndarray:
    """Embedding rows [N, D] -> per-cell features [N, C, F] (C = 1 cell: the whole learned embedding)."""
    rows = np.asarray(rows, np.float32)
    if rows.ndim != 2:
        raise NormalityError(f"embedding rows must be [N, D], got shape {list(rows.shape)}")
    if layout and layout.get("spatial"):
        a, b = layout["spatial"]
        if rows.shape[1] != b:
            raise NormalityError(f"embedding has {rows.shape[1]} values, the layout expects {b}")
        g, names = int(layout["grid"]), list(layout["features"])
        cols = [names.index(f) for f in features]
        return rows[:, a:b].reshape(len(rows), g * g, len(names))[:, :, cols]
    if layout and layout.get("fused"):
        a, b = layout["fused"]
        return rows[:, None, a:b]
    return rows[:, None, :]


def _nearest(q: np.ndarray, bank: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per cell, the distance from each query to its nearest bank row: q [N, C, F], bank [M, C, F] -> [N, C]."""
    out = np.empty(q.shape[:2], np.float32)
    bt = np.ascontiguousarray(bank.transpose(1, 0, 2))  # [C, M, F]
    bn = (bt * bt).sum(-1)  # [C, M]
    for s in range(0, len(q), chunk):
        qc = np.ascontiguousarray(q[s : s + chunk].transpose(1, 0, 2))  # [C, n, F]
        d2 = (qc * qc).sum(-1)[:, :, None] + bn[:, None, :] - 2 * np.einsum("cnf,cmf->cnm", qc, bt)
        out[s : s + chunk] = np.sqrt(np.maximum(d2.min(axis=2), 0.0)).T
    return out


@dataclass
class NormalityModel:
    camera: str
    layout: dict[str, Any] | None
    features: tuple[str, ...]
    mean: np.ndarray  # [C, F]
    scale: np.ndarray  # [C, F]
    bank: np.ndarray  # [M, C, F], standardised
    threshold: float
    far: float
    windows: int  # normal windows learned from
    calibration: dict[str, float]

    # -- fitting ---------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, embeddings: np.ndarray | Sequence[np.ndarray], layout: dict[str, Any] | None = None,
            camera: str = "", far: float = DEFAULT_FAR, features: Sequence[str] = DEFAULT_FEATURES,
            max_bank: int = MAX_BANK, seed: int = 0, block: int = BLOCK,
            scale_floor: float = SCALE_FLOOR) -> NormalityModel:
        """Learn from normal embedding rows: one array [N, D] of consecutive windows, or a list of such
        arrays (one per clip; blocks never span two clips)."""
        if not 0.0 < far < 1.0:
            raise NormalityError(f"far must be in (0, 1), got {far}")
        parts = [np.asarray(e, np.float32) for e in ([embeddings] if isinstance(embeddings, np.ndarray)
                                                     else embeddings)]
        parts = [p for p in parts if len(p)]
        if not parts:
            raise NormalityError("no normal windows to learn from")
        features = tuple(features) if layout and layout.get("spatial") else ()
        x = np.concatenate([_features(p, layout, features) for p in parts])  # [N, C, F]
        n = len(x)
        if n < 2 * FOLDS:
            raise NormalityError(f"{n} normal windows are too few: learn from at least {2 * FOLDS} "
                                 f"(about {FOLDS} s of footage at the default hop)")
        # contiguous blocks within each clip, assigned to folds round-robin
        blocks = np.concatenate([np.arange(len(p)) // block + 10_000 * k for k, p in enumerate(parts)])
        _, block_id = np.unique(blocks, return_inverse=True)
        nblocks = int(block_id.max()) + 1
        if nblocks < FOLDS:  # short footage: smaller blocks so every fold has some
            block_id = np.arange(n) * FOLDS // n
            nblocks = FOLDS
        fold = block_id % FOLDS
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        # a cell where nothing ever changes has a tiny spread: floor it at a fraction of the feature's
        # median spread over cells, so that compression noise there does not look like an event
        floor = scale_floor * np.median(scale, axis=0, keepdims=True) + 1e-6
        scale = np.maximum(scale, floor)
        z = ((x - mean) / scale).astype(np.float32)
        oof = np.empty(n, np.float32)
        for f in range(FOLDS):
            held, rest = fold == f, fold != f
            if not held.any() or not rest.any():
                continue
            oof[held] = _nearest(z[held], _subsample(z[rest], max_bank, seed + f)).max(axis=1)
        threshold = float(np.quantile(oof, 1.0 - far))
        model = cls(camera, layout, features, mean.astype(np.float32), scale.astype(np.float32),
                    _subsample(z, max_bank, seed), threshold, far, n,
                    {"out_of_block_p50": float(np.median(oof)), "out_of_block_p99": float(np.quantile(oof, 0.99)),
                     "blocks": nblocks})
        log.info("normality for camera %s: %d windows, threshold %.3f at false-alarm rate %g",
                 camera or "?", n, threshold, far)
        return model

    # -- scoring ---------------------------------------------------------------------------------------
    def cell_scores(self, embedding_rows: np.ndarray) -> np.ndarray:
        """[B, C]: per cell, the standardised distance to the nearest normal window."""
        x = _features(embedding_rows, self.layout, self.features)
        if x.shape[1:] != self.mean.shape:
            raise NormalityError(f"embedding rows give features {list(x.shape[1:])}, the model was learned "
                                 f"on {list(self.mean.shape)}: was it learned with another engine model?")
        return _nearest((x - self.mean) / self.scale, self.bank)

    def score(self, embedding_rows: np.ndarray) -> np.ndarray:
        """float [B]: how far each window is from this camera's normal (alert when >= `threshold`)."""
        return self.cell_scores(embedding_rows).max(axis=1)

    def where(self, embedding_rows: np.ndarray) -> list[tuple[int, int] | None]:
        """For each window, the (row, column) of the grid cell that scored highest (None without a grid)."""
        return self.score_where(embedding_rows)[1]

    def score_where(self, embedding_rows: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int] | None]]:
        """`score` and `where` from one pass over the cells."""
        cells = self.cell_scores(embedding_rows)
        g = self.grid
        return cells.max(axis=1), [divmod(int(i), g) if g else None for i in cells.argmax(axis=1)]

    @property
    def grid(self) -> int:
        """G of the G x G grid the model compares (0 without one)."""
        return int(self.layout["grid"]) if self.layout and self.layout.get("spatial") else 0

    # -- files -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One `.npz` file (arrays + JSON metadata); written atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "camera": self.camera, "layout": self.layout, "features": list(self.features),
                "threshold": self.threshold, "far": self.far, "windows": self.windows,
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
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise NormalityError(f"{path}: not a normality model (format {fmt!r}, expected {FORMAT})")
        try:
            return cls(meta["camera"], meta["layout"], tuple(meta["features"]), mean, scale, bank,
                       float(meta["threshold"]), float(meta["far"]), int(meta["windows"]), meta.get("calibration", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise NormalityError(f"{path}: incomplete normality model ({type(e).__name__}: {e})") from e

    def check(self, layout: dict[str, Any] | None, dim: int) -> None:
        """Raise NormalityError unless this model can score embeddings of `dim` values with `layout`."""
        if self.layout != layout:
            raise NormalityError(f"learned on another embedding layout ({self.layout}) than the engine "
                                 f"model's ({layout}): learn it again with this engine model")
        self.cell_scores(np.zeros((1, dim), np.float32))


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
    """An automatic learning period at first start: collect a camera's embedding rows until `windows`
    have arrived, then fit, save to `path` and return the model (None until then).

        learner = NormalityLearner("cam1", layout, windows=1200, path=camera_path(dir, "cam1"))
        model = learner.add(rows)  # per engine result; a NormalityModel once learned
    """

    def __init__(self, camera: str, layout: dict[str, Any] | None, windows: int, path: str | Path | None = None,
                 far: float = DEFAULT_FAR) -> None:
        if windows < 2 * FOLDS:
            raise NormalityError(f"a learning period needs at least {2 * FOLDS} windows, got {windows}")
        self.camera, self.layout, self.windows, self.far = camera, layout, windows, far
        self.path = Path(path) if path is not None else None
        self._rows: list[np.ndarray] = []
        self._n = 0
        self.model: NormalityModel | None = None

    @property
    def progress(self) -> float:
        return min(1.0, self._n / self.windows)

    def add(self, embedding_rows: np.ndarray) -> NormalityModel | None:
        if self.model is not None:
            return self.model
        rows = np.atleast_2d(np.asarray(embedding_rows, np.float32))
        self._rows.append(rows)
        self._n += len(rows)
        if self._n < self.windows:
            return None
        self.model = NormalityModel.fit(np.concatenate(self._rows), layout=self.layout, camera=self.camera,
                                        far=self.far)
        self._rows.clear()
        if self.path is not None:
            self.model.save(self.path)
            log.info("camera %s: learned normal from %d windows, saved %s", self.camera, self._n, self.path)
        return self.model
