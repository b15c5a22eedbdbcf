"""INT8 calibration: windows recorded from real sources feed TensorRT's entropy calibrator.

`record(windows, out_dir)` stores windows (as ingest produced them: uint8 video, float32 audio, masks)
in .npz files; `streamer engine calibrate` decodes the sources with the live ingest code and calls it.
`entropy_calibrator(dir, cache_file, batch)` returns an IInt8EntropyCalibrator2 that re-chunks the
recorded windows into batches of exactly `batch` (calibration runs at one fixed shape: the build uses a
calibration profile with min = opt = max = `batch`) and uploads them with pycuda; `close()` frees its
device buffers.

Recording is executed and tested here. The calibrator is NOT EXECUTED on the development machines (no
GPU, no TensorRT); it is written to the TensorRT 10 Python API (IInt8EntropyCalibrator2: get_batch_size,
get_batch, read_calibration_cache, write_calibration_cache) and type-checked with tensorrt-stubs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.cuda import cuda_call, import_cuda, import_tensorrt
from engines.errors import EngineError
from engines.feed import WindowLike, windows_feed
from engines.spec import INPUT_NAMES, INPUT_VIDEO

if TYPE_CHECKING:
    import tensorrt as trt

    from engines.pycuda_types import DeviceAllocation

FILE_GLOB = "windows-*.npz"


def record(windows: Iterable[WindowLike], out_dir: str | Path, limit: int = 512, per_file: int = 64) -> int:
    """Save up to `limit` windows into `out_dir` as .npz files of `per_file` windows; returns how many.
    Files already there are kept (several sources can be recorded into one directory)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_file = len(list(out.glob(FILE_GLOB)))
    pending: list[WindowLike] = []
    saved = 0
    for w in windows:
        if saved + len(pending) >= limit:
            break
        pending.append(w)
        if len(pending) == per_file:
            _save(out / f"windows-{n_file:05d}.npz", pending)
            n_file, saved, pending = n_file + 1, saved + len(pending), []
    if pending:
        _save(out / f"windows-{n_file:05d}.npz", pending)
        saved += len(pending)
    return saved


def _save(path: Path, ws: list[WindowLike]) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **windows_feed(ws))  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    tmp.replace(path)


def calibration_files(calib_dir: str | Path) -> list[Path]:
    files = sorted(Path(calib_dir).glob(FILE_GLOB))
    if not files:
        raise EngineError(f"no calibration windows in {calib_dir}: run `streamer engine calibrate` first")
    return files


def batches(calib_dir: str | Path, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """The recorded windows in feeds of exactly `batch` windows (a remainder smaller than `batch` is left out)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    held: dict[str, list[np.ndarray]] = {n: [] for n in INPUT_NAMES}
    count = 0
    for path in calibration_files(calib_dir):
        with np.load(path) as data:
            missing = [n for n in INPUT_NAMES if n not in data]
            if missing:
                raise EngineError(f"{path} is not a calibration file (missing {missing})")
            for n in INPUT_NAMES:
                held[n].append(data[n])
            count += int(data[INPUT_VIDEO].shape[0])
        while count >= batch:
            joined = {n: np.concatenate(held[n]) for n in INPUT_NAMES}
            yield {n: np.ascontiguousarray(joined[n][:batch]) for n in INPUT_NAMES}
            held = {n: [joined[n][batch:]] for n in INPUT_NAMES}
            count -= batch


def entropy_calibrator(calib_dir: str | Path, cache_file: str | Path,
                       batch: int) -> tuple[trt.IInt8EntropyCalibrator2, Callable[[], None]]:
    """An IInt8EntropyCalibrator2 over the windows in `calib_dir` and the function that frees its device
    buffers (call it after the build). Needs TensorRT, pycuda and a current CUDA context
    (engines.build.build_engine provides it)."""
    import_tensorrt()
    import tensorrt as trt

    cuda = import_cuda()
    calibration_files(calib_dir)  # fail now, before the build starts, when nothing was recorded

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = batch
            self.cache_file = Path(cache_file)
            self._feeds = batches(calib_dir, batch)
            self._device: dict[str, DeviceAllocation] = {}
            self.batches_used = 0

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int]:
            feed = next(self._feeds, None)
            if feed is None:
                return []  # no more data: calibration ends
            for n in INPUT_NAMES:
                if n not in self._device:
                    self._device[n] = cuda_call(cuda, f"mem_alloc({n})", cuda.mem_alloc, feed[n].nbytes)
                cuda_call(cuda, f"memcpy_htod({n})", cuda.memcpy_htod, self._device[n], feed[n])
            self.batches_used += 1
            return [int(self._device[n]) for n in names]

        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]  # None: no cache (the stubs miss it)
            return self.cache_file.read_bytes() if self.cache_file.is_file() else None

        def write_calibration_cache(self, cache: memoryview) -> None:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            self.cache_file.write_bytes(bytes(cache))

        def close(self) -> None:
            for n, mem in list(self._device.items()):
                cuda_call(cuda, f"DeviceAllocation.free({n})", mem.free)
            self._device = {}

    calibrator = EntropyCalibrator()
    return calibrator, calibrator.close
