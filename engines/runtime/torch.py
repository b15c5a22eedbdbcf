"""PyTorch backend: rebuilds FusionNet from `<name>.pt` beside the ONNX file, on the CPU or a CUDA GPU.

A batch goes through in two steps: the poses first, on the host (engines.pose.PoseRunner: ONNX Runtime,
each distinct frame once), then the rest of the network (`FusionNet.from_poses`) on the device. That
second step makes no host tensor and reads nothing back, so on CUDA it is captured as a CUDA graph.

- Batch-size buckets: a batch is padded to the next of `BUCKETS` (padding rows have no audio and no
  video) and the results sliced back, so a handful of shapes serve every batch (and each is one graph).
- Per bucket, one host buffer in and one out (pinned on CUDA): the batch's audio, masks and poses are
  written into the one input buffer and copied to the device in one copy; the logits and embedding come
  back in one copy.
- On CUDA: `graphs` captures each bucket as a `torch.cuda.CUDAGraph` on its first use (replayed after);
  `precision="fp16"` runs the network under autocast to float16. The CPU runs fp32, eagerly.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import BackendUnavailable, InferenceError, ModelLoadError
from engines.pose import PEOPLE, POSE_WIDTH
from engines.runtime._load import load_model_spec
from engines.runtime.base import Runtime
from engines.shared import check_shared_files
from engines.spec import INPUT_AUDIO, INPUT_AUDIO_MASK, INPUT_VIDEO, INPUT_VIDEO_MASK, OUTPUT_NAMES, WEIGHTS_DIR

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # batch sizes run; a batch is padded to the next one


def weights_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".pt")


def bucket(n: int) -> int:
    """The smallest of BUCKETS that holds a batch of `n`."""
    return next(b for b in BUCKETS if b >= n)


@dataclass
class _Slot:
    """One bucket's buffers: `host_in`/`host_out` on the host (pinned on CUDA), `dev_in` on the device
    (`host_in` itself on the CPU); with a CUDA graph, `graph` and the `dev_out` it writes."""

    host_in: Any
    dev_in: Any
    host_out: Any
    graph: Any = None
    dev_out: Any = None


class TorchRuntime(Runtime):
    """`device`: "cpu", "cuda" or "cuda:N"; `precision`: "fp32" or "fp16" (CUDA only; the CPU runs fp32);
    `graphs`: capture each bucket as a CUDA graph (CUDA only)."""

    backend = "torch"
    max_batch = BUCKETS[-1]

    def __init__(self, model_path: str | Path, device: str = "cpu", threads: int = 0, precision: str = "fp32",
                 graphs: bool = True) -> None:
        spec = load_model_spec(model_path)
        super().__init__(model_path, spec)
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable("backend 'torch' needs PyTorch: pip install 'streamer[train]'") from e
        self._torch = torch
        self._device = _device(torch, device)
        cuda = self._device.type == "cuda"
        if precision not in ("fp32", "fp16"):
            raise BackendUnavailable(f"engine.precision {precision!r}: the torch backend runs fp32 or fp16 (int8 is TensorRT's)")
        self.device = str(self._device)
        self.precision = precision if cuda else "fp32"
        self.graphs = graphs and cuda
        self._model = self._load(model_path).to(self._device).eval()
        if threads > 0:
            torch.set_num_threads(threads)
        if cuda:
            torch.cuda.set_device(self._device)
            self._stream = torch.cuda.Stream(self._device)
        self._frame_index = self._model.arch.pose_frames
        self._pose_size = len(self._frame_index) * PEOPLE * POSE_WIDTH
        self._width_in = spec.samples + 2 + self._pose_size  # [audio | video_mask | audio_mask | poses]
        self._width_out = len(spec.classes) + spec.embedding_dim  # [event_logits | embedding]
        self._slots: dict[int, _Slot] = {}

    def _load(self, model_path: str | Path) -> Any:
        torch = self._torch
        from engines.model import BACKBONE_PREFIXES, Arch, FusionNet

        wp = weights_path(model_path)
        if not wp.is_file():
            raise ModelLoadError(f"backend 'torch' needs the state dict {wp} beside {self.model_path.name}")
        # the backbones load from the package's files (engines/backbones.py, engines.pose.PoseRunner): they
        # must be the ones the model was exported with (engines/shared.py)
        check_shared_files(model_path, WEIGHTS_DIR)
        try:
            ckpt = torch.load(wp, map_location="cpu", weights_only=True)
            model = FusionNet(self.spec, Arch.from_dict(ckpt["arch"]))
            missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
            missing = [k for k in missing if not k.startswith(BACKBONE_PREFIXES)]
            if missing or unexpected:
                raise KeyError(f"state dict does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"cannot load PyTorch weights {wp}: {e}") from e
        return model

    @property
    def pose_counts(self) -> tuple[int, int]:
        runner = self._model.pose_runner
        return (runner.computed, runner.reused)

    def poses(self, video: np.ndarray, video_mask: np.ndarray) -> np.ndarray:
        """The first step of a batch, on the host: poses [B, K, 6, 56] of its windows (engines.pose.PoseRunner)."""
        return self._model.pose_runner.poses(video, video_mask, self._frame_index)

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(feed[INPUT_AUDIO])
        poses = self.poses(feed[INPUT_VIDEO], feed[INPUT_VIDEO_MASK])
        slot = self._slot(bucket(n))
        self._fill(slot.host_in.numpy(), feed, poses, n)
        try:
            out = self._run(slot)
        except RuntimeError as e:
            raise InferenceError(f"PyTorch failed on {self.model_path.name}: {e}") from e
        k = len(self.spec.classes)
        return dict(zip(OUTPUT_NAMES, (out[:n, :k].copy(), out[:n, k:].copy())))

    def _fill(self, x: np.ndarray, feed: dict[str, np.ndarray], poses: np.ndarray, n: int) -> None:
        """Write a batch of `n` into a bucket's input buffer; the padding rows get zeros (no audio, no video)."""
        s = self.spec.samples
        x[:n, :s] = feed[INPUT_AUDIO]
        x[:n, s] = feed[INPUT_VIDEO_MASK]
        x[:n, s + 1] = feed[INPUT_AUDIO_MASK]
        x[:n, s + 2 :] = poses.reshape(n, -1)
        x[n:] = 0.0

    def _slot(self, b: int) -> _Slot:
        if b not in self._slots:
            torch, cuda = self._torch, self._device.type == "cuda"
            host_in = torch.zeros((b, self._width_in), pin_memory=cuda)
            # empty: no kernel on the default stream that the copy on self._stream could overtake
            dev_in = torch.empty((b, self._width_in), device=self._device) if cuda else host_in
            self._slots[b] = _Slot(host_in, dev_in, torch.zeros((b, self._width_out), pin_memory=cuda))
        return self._slots[b]

    def _run(self, slot: _Slot) -> np.ndarray:
        """One copy in, the network (replayed as a graph, or eagerly), one copy out."""
        torch = self._torch
        with torch.inference_mode():
            if self._device.type == "cpu":
                slot.host_out.copy_(self._forward(slot.dev_in))
                return slot.host_out.numpy()
            with torch.cuda.stream(self._stream):
                slot.dev_in.copy_(slot.host_in, non_blocking=True)
                if self.graphs and slot.graph is None:
                    slot.graph, slot.dev_out = self._capture(slot.dev_in)
                if slot.graph is not None:
                    slot.graph.replay()
                    out = slot.dev_out
                else:
                    out = self._forward(slot.dev_in)
                slot.host_out.copy_(out, non_blocking=True)
            self._stream.synchronize()
        return slot.host_out.numpy()

    def _forward(self, x: Any) -> Any:
        """The network after the poses, on a bucket's device input [b, width_in] -> [b, width_out] float32."""
        torch, s = self._torch, self.spec.samples
        poses = x[:, s + 2 :].reshape(x.shape[0], len(self._frame_index), PEOPLE, POSE_WIDTH)
        # no autocast weight cache: a CUDA graph must not hold casts made outside it
        half = torch.autocast("cuda", dtype=torch.float16, cache_enabled=False) if self.precision == "fp16" else nullcontext()
        with half:
            logits, emb = self._model.from_poses(x[:, :s], x[:, s], x[:, s + 1], poses)
        return torch.cat([logits.float(), emb.float()], dim=1)

    def _capture(self, x: Any) -> tuple[Any, Any]:
        """A CUDA graph of `_forward` on the device input `x`, and the output tensor it writes. Warmed up on
        the capture stream first (kernels chosen, workspaces allocated outside the capture)."""
        torch = self._torch
        for _ in range(3):
            self._forward(x)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
            out = self._forward(x)
        log.info("torch: captured a CUDA graph for batch %d on %s (%s)", x.shape[0], self.device, self.precision)
        return graph, out

    def _close_impl(self) -> None:
        self._slots.clear()
        del self._model


def _device(torch: Any, device: str) -> Any:
    """`device` as a torch.device; BackendUnavailable naming engine.device when CUDA is asked for and absent."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"engine.device {device!r}: expected cpu, cuda or cuda:N") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"engine.device {device!r}: expected cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable(f"engine.device is {device!r} but torch {torch.__version__} sees no CUDA GPU "
                                     "(a CPU-only build of torch, no NVIDIA driver, or no GPU)")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise BackendUnavailable(f"engine.device is {device!r} but this host has {torch.cuda.device_count()} CUDA GPU(s)")
    return dev
