"""INT8 calibration: windows recorded from real sources feed TensorRT's entropy calibrator.

`record(url, out_dir, windows)` stores windows as .npz batches (the same decode and windowing as
live sources); `entropy_calibrator(dir, batch)` returns an IInt8EntropyCalibrator2 that uploads them
batch by batch. The calibrator is NOT EXECUTED on the development machines (no GPU, no TensorRT);
recording is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.build import TENSORRT_MISSING, ensure_real
from engines.errors import BackendUnavailable, EngineError
from engines.spec import INPUT_AUDIO, INPUT_AUDIO_MASK, INPUT_NAMES, INPUT_VIDEO, INPUT_VIDEO_MASK, ModelSpec


def record(url: str, out_dir: str | Path, spec: ModelSpec, windows: int = 512, batch: int = 8, hop: float = 0.5) -> int:
    """Decode `url` (file or stream) into windows and save them as calibration batches; returns how many."""
    from streamer.ingest.source import SourceOptions, SourceReader, probe_geometry

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader = SourceReader(url, "calibrate", probe_geometry(spec, hop), SourceOptions(realtime=False))
    pending: list = []
    n = len(list(out.glob("batch-*.npz")))
    saved = 0
    for w in reader.windows():
        pending.append(w)
        if len(pending) == batch:
            _save(out / f"batch-{n:05d}.npz", pending)
            n, saved, pending = n + 1, saved + batch, []
        if saved >= windows:
            break
    return saved


def _save(path: Path, ws: list) -> None:
    np.savez(path, **{  # type: ignore[arg-type]
        INPUT_VIDEO: np.stack([w.video for w in ws]),
        INPUT_AUDIO: np.stack([w.audio for w in ws]),
        INPUT_VIDEO_MASK: np.array([w.video_mask for w in ws], np.float32),
        INPUT_AUDIO_MASK: np.array([w.audio_mask for w in ws], np.float32),
    })


def entropy_calibrator(calib_dir: str | Path, cache_file: str | Path) -> Any:
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found]
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"{TENSORRT_MISSING} ({e})") from e
    ensure_real(trt)
    files = sorted(Path(calib_dir).glob("batch-*.npz"))
    if not files:
        raise EngineError(f"no calibration batches in {calib_dir}: run `streamer engine calibrate` first")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            first = np.load(files[0])
            self.batch = int(first[INPUT_VIDEO].shape[0])
            self.files = iter(files)
            self.device = {n: cuda.mem_alloc(first[n].nbytes) for n in INPUT_NAMES}

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int]:
            path = next(self.files, None)
            if path is None:
                return []  # calibration data exhausted
            data = np.load(path)
            for n in INPUT_NAMES:
                cuda.memcpy_htod(self.device[n], np.ascontiguousarray(data[n]))
            return [int(self.device[n]) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            p = Path(cache_file)
            return p.read_bytes() if p.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            Path(cache_file).write_bytes(bytes(cache))

    return EntropyCalibrator()
