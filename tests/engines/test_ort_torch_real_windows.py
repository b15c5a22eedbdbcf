"""The one parity test of the backends: each backend this host has (torch on the CPU always; torch on CUDA
and TensorRT where present) gives ONNX Runtime's outputs for the shipped model on real windows (decoded
from a real clip), windows without video or audio among them, whatever batch-size bucket it pads a batch
into (engines/runtime/torch.py)."""

from pathlib import Path

import numpy as np

from engines import spec as espec
from engines.feed import windows_feed
from engines.runtime import open_runtime
from engines.runtime.onnxruntime import OnnxRuntime
from engines.runtime.select import tensorrt_importable, torch_cuda_missing
from engines.runtime.torch import TorchRuntime
from streamer.ingest.clip import clip_windows

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"
# float32 on both sides: the error grows with the values (YAMNet's AudioSet logits reach several hundred)
TOLERANCE = 1e-4  # of max(1, the largest |value| of the output)
TENSORRT_TOLERANCE = 1e-2  # TensorRT's fp32 engines may use TF32 kernels (10-bit mantissa) on Ampere and later


def backends(cache: Path):
    """(name, how to open it, tolerance) for each backend this host can run besides ONNX Runtime."""
    yield "torch cpu", lambda: open_runtime(espec.DEFAULT_MODEL, backend="torch", device="cpu"), TOLERANCE
    if torch_cuda_missing() is None:
        yield "torch cuda", lambda: open_runtime(espec.DEFAULT_MODEL, backend="torch", device="cuda",
                                                 precision="fp32"), TOLERANCE
    if tensorrt_importable():
        from engines.build import build_engine

        build_engine(espec.DEFAULT_MODEL, precision="fp32", batch=(1, 4, 8), cache_dir=cache)
        yield "tensorrt", lambda: open_runtime(espec.DEFAULT_MODEL, backend="tensorrt", precision="fp32",
                                               max_batch=8, engine_cache=cache), TENSORRT_TOLERANCE


def test_every_backend_here_agrees_with_onnxruntime_on_real_windows(tmp_path):
    feed = windows_feed(clip_windows(DEMO, espec.load_spec(espec.DEFAULT_MODEL))[:8])
    assert feed[espec.INPUT_AUDIO_MASK].all() and feed[espec.INPUT_VIDEO_MASK].all()
    feed[espec.INPUT_VIDEO_MASK][2] = 0.0  # a window without video: no pose is run for it
    feed[espec.INPUT_AUDIO_MASK][6] = 0.0  # one without audio
    seen = []
    with OnnxRuntime(espec.DEFAULT_MODEL) as ort:
        want = {n: ort.infer({k: v[:n] for k, v in feed.items()}) for n in (8, 5, 1)}
        for name, opened, tolerance in backends(tmp_path):
            with opened() as rt:
                seen.append((name, rt.backend, rt.device))
                for n in (8, 5, 1):  # bucket 8 full, bucket 8 with 3 padding rows, bucket 1
                    got = rt.infer({k: v[:n] for k, v in feed.items()})
                    for out in (espec.OUTPUT_LOGITS, espec.OUTPUT_EMBEDDING):
                        assert got[out].shape == want[n][out].shape, (name, out, n)
                        scale = max(1.0, float(np.abs(want[n][out]).max()))
                        assert np.abs(got[out] - want[n][out]).max() <= tolerance * scale, (name, out, n)
    assert seen[0] == ("torch cpu", "torch", "cpu")


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
