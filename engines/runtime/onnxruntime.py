"""ONNX Runtime backend (CPU, or CUDA when the onnxruntime-gpu build and a GPU are present).

The model takes `poses` as an input (engines/export.py): the pose model file its metadata names
(engines.pose.pose_front) runs on each distinct frame once (engines.pose.PoseRunner; consecutive windows
share half their pose frames), the model on the batch. The scores are the one graph's
(tests/engines/test_pose_reuse.py). `reuse_poses=False` runs the one graph (engines.pose.one_graph: the
pose model in front, as TensorRT builds it). An older export with the pose graph inside is cut at its
poses when it loads (engines.pose.detach_pose). The files the model shares with the backbones must be
the ones it was exported with (engines.shared.check_shared_files).

Imports onnxruntime and onnx only (never torch), so the CPU serving path stays light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import BackendUnavailable, InferenceError, ModelLoadError
from engines.pose import POSES_INPUT, Detached, PoseRunner, detach_pose, one_graph, pose_front
from engines.runtime._load import load_model_spec
from engines.runtime.base import Runtime
from engines.shared import check_shared_files
from engines.spec import INPUT_NAMES, INPUT_VIDEO, INPUT_VIDEO_MASK, OUTPUT_NAMES

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


def _providers(ort: Any, device: str) -> list[Any]:
    """The execution providers of `device`: "cpu", "cuda" or "cuda:N"."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise ValueError(f"engine.device {device!r}: ONNX Runtime runs on cpu, cuda or cuda:N")
    if kind == "cpu":
        return [CPU]
    if CUDA not in ort.get_available_providers():
        raise BackendUnavailable(
            f"engine.device {device}: ONNX Runtime has no CUDA provider here: install onnxruntime-gpu on a "
            "machine with an NVIDIA driver, or set engine.device to cpu"
        )
    return [(CUDA, {"device_id": int(index or 0)}), CPU]


class OnnxRuntime(Runtime):
    """`device`: "cpu", "cuda" or "cuda:N"; `intra_op_threads=0` lets ONNX Runtime pick (one per core);
    `reuse_poses`: cut the model at its poses and run the pose graph once per distinct frame."""

    pose: PoseRunner | None = None

    def __init__(self, model_path: str | Path, device: str = "cpu", intra_op_threads: int = 0,
                 reuse_poses: bool = True) -> None:
        spec = load_model_spec(model_path)
        super().__init__(model_path, spec)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable("backend 'onnxruntime' needs the onnxruntime package") from e
        providers = _providers(ort, device)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(0, int(intra_op_threads))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # no busy-waiting between ops: ingest processes share these cores, and spinning threads steal from them
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        pose, graph = self._graph(reuse_poses)
        try:
            self._session = ort.InferenceSession(graph, so, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind types
            raise ModelLoadError(f"ONNX Runtime cannot load {self.model_path}: {e}") from e
        self.device = device
        self.providers = tuple(self._session.get_providers())
        if device != "cpu" and CUDA not in self.providers:  # ONNX Runtime drops a provider whose libraries fail to load
            raise BackendUnavailable(f"engine.device {device}: ONNX Runtime's CUDA provider did not start "
                                     "(its CUDA/cuDNN libraries?); set engine.device to cpu")
        self.backend = "onnxruntime-cuda" if device.startswith("cuda") else "onnxruntime"
        names = {i.name for i in self._session.get_inputs()}
        want = set(INPUT_NAMES) if pose is None else (set(INPUT_NAMES) - {INPUT_VIDEO}) | {POSES_INPUT}
        if names != want:
            raise ModelLoadError(f"{self.model_path} has inputs {sorted(names)}, expected {sorted(want)}")
        self._inputs_used = names
        if pose is not None:
            self.pose = PoseRunner(pose[0], threads=intra_op_threads, providers=tuple(providers))
            self._frame_index = pose[1]

    @property
    def pose_counts(self) -> tuple[int, int]:
        return (self.pose.computed, self.pose.reused) if self.pose is not None else (0, 0)

    def _graph(self, reuse_poses: bool) -> tuple[tuple[Path | bytes, tuple[int, ...]] | None, str | bytes]:
        """((pose model, its frames) when the poses are run here, else None; the graph for the session)."""
        path = self.model_path
        try:
            check_shared_files(path)
            front = pose_front(path)
            if front is not None:  # the pose model in its own file
                if reuse_poses:
                    return (front.model, front.frame_index), str(path)
                return None, one_graph(path).SerializeToString()
            detached: Detached | None = detach_pose(path) if reuse_poses else None  # an older export: one graph
        except ModelLoadError:
            raise
        except Exception as e:  # onnx raises its own types for a broken file
            raise ModelLoadError(f"cannot read the graph of {path}: {e}") from e
        if detached is None:
            return None, str(path)
        return (detached.pose, detached.frame_index), detached.heads

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            if self.pose is not None:
                feed = dict(feed)
                feed[POSES_INPUT] = self.pose.poses(feed[INPUT_VIDEO], feed[INPUT_VIDEO_MASK], self._frame_index)
            outs = self._session.run(list(OUTPUT_NAMES), {k: v for k, v in feed.items() if k in self._inputs_used})
        except Exception as e:
            raise InferenceError(f"ONNX Runtime failed on {self.model_path.name}: {e}") from e
        return dict(zip(OUTPUT_NAMES, outs))

    def _close_impl(self) -> None:
        del self._session
