"""PyTorch reference backend: rebuilds FusionNet from `<name>.pt` beside the ONNX file.

Used to check the other backends and for debugging; not the serving path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.errors import BackendUnavailable, InferenceError, ModelLoadError
from engines.runtime._load import load_model_spec
from engines.runtime.base import Runtime
from engines.spec import INPUT_NAMES, OUTPUT_NAMES


def weights_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".pt")


class TorchRuntime(Runtime):
    backend = "torch"

    def __init__(self, model_path: str | Path, device: str = "cpu", threads: int = 0) -> None:
        spec = load_model_spec(model_path)
        super().__init__(model_path, spec)
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable("backend 'torch' needs PyTorch: pip install 'streamer[train]'") from e
        from engines.model import BACKBONE_PREFIXES, Arch, FusionNet

        wp = weights_path(model_path)
        if not wp.is_file():
            raise ModelLoadError(f"backend 'torch' needs the state dict {wp} beside {self.model_path.name}")
        try:
            ckpt = torch.load(wp, map_location=device, weights_only=True)
            model = FusionNet(spec, Arch.from_dict(ckpt["arch"]))
            missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
            missing = [k for k in missing if not k.startswith(BACKBONE_PREFIXES)]
            if missing or unexpected:
                raise KeyError(f"state dict does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"cannot load PyTorch weights {wp}: {e}") from e
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self._model = model.to(self._device).eval()

    @property
    def pose_counts(self) -> tuple[int, int]:
        runner = self._model.pose.runner
        return (runner.computed, runner.reused)

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        try:
            with torch.inference_mode():
                args = [torch.from_numpy(feed[n]).to(self._device) for n in INPUT_NAMES]
                outs = self._model(*args)
        except RuntimeError as e:
            raise InferenceError(f"PyTorch failed on {self.model_path.name}: {e}") from e
        return {n: o.detach().cpu().numpy() for n, o in zip(OUTPUT_NAMES, outs)}

    def _close_impl(self) -> None:
        del self._model
