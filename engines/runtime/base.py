"""The interface every engine backend implements (TensorRT, ONNX Runtime, PyTorch).

Public methods check their inputs, then call the backend's `_infer_impl`; a runtime is a context
manager and `close()` releases it deterministically (no cleanup in `__del__`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from engines.errors import EngineError, InputError
from engines.spec import (
    INPUT_AUDIO,
    INPUT_AUDIO_MASK,
    INPUT_NAMES,
    INPUT_VIDEO,
    INPUT_VIDEO_MASK,
    OUTPUT_NAMES,
    ModelSpec,
)

InputSpec = dict[str, tuple[tuple[int, ...], np.dtype]]


def spec_inputs(spec: ModelSpec) -> InputSpec:
    """name -> (shape with -1 for the batch axis, dtype), in INPUT_NAMES order."""
    return {
        INPUT_VIDEO: ((-1, spec.frames, spec.height, spec.width, 3), np.dtype(np.uint8)),
        INPUT_AUDIO: ((-1, spec.samples), np.dtype(np.float32)),
        INPUT_VIDEO_MASK: ((-1,), np.dtype(np.float32)),
        INPUT_AUDIO_MASK: ((-1,), np.dtype(np.float32)),
    }


class Runtime(ABC):
    """One loaded model on one backend. `infer` takes a batch, returns `event_logits` and `embedding`."""

    backend: str = "?"
    device: str = "cpu"  # where the network runs: "cpu", "cuda", "cuda:N"
    max_batch: int | None = None  # backends with a fixed optimisation profile set this
    chosen_because: str = ""  # why open_runtime chose this backend and device (engines/runtime/select.py)

    def __init__(self, model_path: str | Path, spec: ModelSpec) -> None:
        self.model_path = Path(model_path)
        self.spec = spec
        self._inputs = spec_inputs(spec)
        self._closed = False

    @property
    def pose_counts(self) -> tuple[int, int]:
        """(computed, reused) pose frames so far; (0, 0) where the pose graph runs inside the model."""
        return (0, 0)

    def input_spec(self) -> InputSpec:
        return dict(self._inputs)

    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES

    def check_feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate names, dtypes, shapes and batch sizes; return C-contiguous arrays in input order."""
        if not isinstance(feed, dict):
            raise InputError(f"feed must be a dict of name -> numpy array, got {type(feed).__name__}")
        missing = [n for n in INPUT_NAMES if n not in feed]
        extra = sorted(set(feed) - set(INPUT_NAMES))
        if missing or extra:
            raise InputError(
                f"feed names do not match the model inputs {list(INPUT_NAMES)}: "
                f"missing {missing}, unexpected {extra}"
            )
        out: dict[str, np.ndarray] = {}
        batch: int | None = None
        for name, (shape, dtype) in self._inputs.items():
            a = feed[name]
            if not isinstance(a, np.ndarray):
                raise InputError(f"input {name!r} must be a numpy array, got {type(a).__name__}")
            if a.dtype != dtype:
                raise InputError(f"input {name!r} has dtype {a.dtype}, expected {dtype}")
            if a.ndim != len(shape) or tuple(a.shape[1:]) != shape[1:]:
                want = "[B, " + ", ".join(str(d) for d in shape[1:]) + "]" if len(shape) > 1 else "[B]"
                raise InputError(f"input {name!r} has shape {list(a.shape)}, expected {want}")
            if batch is None:
                batch = a.shape[0]
            elif a.shape[0] != batch:
                raise InputError(
                    f"inputs disagree on the batch size: {name!r} has {a.shape[0]}, "
                    f"{INPUT_NAMES[0]!r} has {batch}"
                )
            out[name] = np.ascontiguousarray(a)
        assert batch is not None
        if batch < 1:
            raise InputError("empty batch")
        if self.max_batch is not None and batch > self.max_batch:
            raise InputError(f"batch {batch} exceeds this {self.backend} engine's max batch {self.max_batch}")
        return out

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise EngineError(f"{self.backend} runtime for {self.model_path} is closed")
        return self._infer_impl(self.check_feed(feed))

    @abstractmethod
    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a checked feed; return float32 arrays named by OUTPUT_NAMES."""

    def _close_impl(self) -> None:
        """Release backend resources (sessions, device memory). Called once."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_impl()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend} model={self.model_path.name}>"
