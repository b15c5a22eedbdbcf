"""ONNX Runtime backend (CPU, or CUDA when the onnxruntime-gpu build and a GPU are present).

Imports onnxruntime only (never torch), so the CPU serving path stays light.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engines.errors import BackendUnavailable, InferenceError, ModelLoadError
from engines.runtime._load import load_model_spec
from engines.runtime.base import Runtime
from engines.spec import INPUT_NAMES, OUTPUT_NAMES

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def cuda_available() -> bool:
    """True when this onnxruntime build offers the CUDA provider (a GPU is still needed at load time)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return CUDA in ort.get_available_providers()


class OnnxRuntime(Runtime):
    """`device="cpu"` or `"cuda"`; `intra_op_threads=0` lets ONNX Runtime pick (one per core)."""

    def __init__(self, model_path: str | Path, device: str = "cpu", intra_op_threads: int = 0) -> None:
        spec = load_model_spec(model_path)
        super().__init__(model_path, spec)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable("backend 'onnxruntime' needs the onnxruntime package") from e
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and CUDA not in ort.get_available_providers():
            raise BackendUnavailable(
                "ONNX Runtime has no CUDA provider here: install onnxruntime-gpu on a machine with an "
                "NVIDIA driver, or use device='cpu'"
            )
        providers = [CUDA, CPU] if device == "cuda" else [CPU]
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(0, int(intra_op_threads))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # no busy-waiting between ops: ingest processes share these cores, and spinning threads steal from them
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(self.model_path), so, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind types
            raise ModelLoadError(f"ONNX Runtime cannot load {self.model_path}: {e}") from e
        self.device = device
        self.providers = tuple(self._session.get_providers())
        self.backend = "onnxruntime-cuda" if device == "cuda" else "onnxruntime"
        names = tuple(i.name for i in self._session.get_inputs())
        if set(names) != set(INPUT_NAMES):
            raise ModelLoadError(f"{self.model_path} has inputs {names}, expected {INPUT_NAMES}")

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outs = self._session.run(list(OUTPUT_NAMES), feed)
        except Exception as e:
            raise InferenceError(f"ONNX Runtime failed on {self.model_path.name}: {e}") from e
        return dict(zip(OUTPUT_NAMES, outs))

    def _close_impl(self) -> None:
        del self._session
