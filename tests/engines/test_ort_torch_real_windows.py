"""ONNX Runtime and the torch backend agree on real windows (decoded from a real clip), in fp32, whatever
batch-size bucket the torch backend pads a batch into (engines/runtime/torch.py)."""

from pathlib import Path

import numpy as np

from engines import spec as espec
from engines.feed import windows_feed
from engines.runtime import open_runtime
from engines.runtime.onnxruntime import OnnxRuntime
from engines.runtime.torch import TorchRuntime
from streamer.ingest.clip import clip_windows

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"
# float32 on both sides: the error grows with the values (YAMNet's AudioSet logits reach several hundred)
TOLERANCE = 1e-4  # of max(1, the largest |value| of the output)


def test_ort_and_torch_agree_on_real_windows():
    ws = clip_windows(DEMO, espec.load_spec(espec.DEFAULT_MODEL))[:8]
    feed = windows_feed(ws)
    assert feed[espec.INPUT_AUDIO_MASK].all() and feed[espec.INPUT_VIDEO_MASK].all()
    with OnnxRuntime(espec.DEFAULT_MODEL) as ort, open_runtime(espec.DEFAULT_MODEL, backend="torch", device="cpu") as torch_rt:
        assert (torch_rt.backend, torch_rt.device) == ("torch", "cpu")
        for n in (8, 5, 1):  # bucket 8 full, bucket 8 with 3 padding rows, bucket 1
            part = {k: v[:n] for k, v in feed.items()}
            a, b = ort.infer(part), torch_rt.infer(part)
            for name in (espec.OUTPUT_LOGITS, espec.OUTPUT_EMBEDDING):
                assert a[name].shape == b[name].shape
                scale = max(1.0, float(np.abs(b[name]).max()))
                assert np.abs(a[name] - b[name]).max() <= TOLERANCE * scale, (name, n)


def test_fp16_autocast_keeps_the_scores_of_real_windows():
    """The network after the poses under autocast to float16 (as the torch backend runs it on CUDA with
    engine.precision fp16), here with the CPU's float16 kernels: finite, scores within 0.005 of fp32.
    Evidence that the network tolerates float16, not a measurement of CUDA's kernels."""
    import torch

    feed = windows_feed(clip_windows(DEMO, espec.load_spec(espec.DEFAULT_MODEL))[:8])
    with TorchRuntime(espec.DEFAULT_MODEL, threads=1) as rt:
        poses = torch.from_numpy(rt.poses(feed[espec.INPUT_VIDEO], feed[espec.INPUT_VIDEO_MASK]))
        args = [torch.from_numpy(feed[n]) for n in (espec.INPUT_AUDIO, espec.INPUT_VIDEO_MASK, espec.INPUT_AUDIO_MASK)]
        with torch.inference_mode():
            full = rt._model.from_poses(*args, poses)
            with torch.autocast("cpu", dtype=torch.float16, cache_enabled=False):
                half = rt._model.from_poses(*args, poses)
    assert half[0].dtype == torch.float32 and all(bool(torch.isfinite(h).all()) for h in half)
    assert float((torch.sigmoid(full[0]) - torch.sigmoid(half[0])).abs().max()) <= 0.005
