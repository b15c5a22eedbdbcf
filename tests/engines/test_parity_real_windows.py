"""ONNX Runtime and the torch reference agree on real windows (decoded from a real clip), in fp32."""

from pathlib import Path

import numpy as np

from engines import spec as espec
from engines.runtime.onnxruntime import OnnxRuntime
from engines.runtime.torch import TorchRuntime
from streamer.ingest.clip import clip_windows

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"


def test_ort_and_torch_agree_on_real_windows():
    ws = clip_windows(DEMO, espec.load_spec(espec.DEFAULT_MODEL))[:8]
    feed = {
        espec.INPUT_VIDEO: np.stack([w.video for w in ws]),
        espec.INPUT_AUDIO: np.stack([w.audio for w in ws]),
        espec.INPUT_VIDEO_MASK: np.array([w.video_mask for w in ws], np.float32),
        espec.INPUT_AUDIO_MASK: np.array([w.audio_mask for w in ws], np.float32),
    }
    assert feed[espec.INPUT_AUDIO_MASK].all() and feed[espec.INPUT_VIDEO_MASK].all()
    with OnnxRuntime(espec.DEFAULT_MODEL) as ort, TorchRuntime(espec.DEFAULT_MODEL) as torch_rt:
        a, b = ort.infer(feed), torch_rt.infer(feed)
    assert np.abs(a[espec.OUTPUT_LOGITS] - b[espec.OUTPUT_LOGITS]).max() <= 1e-4
    assert np.abs(a[espec.OUTPUT_EMBEDDING] - b[espec.OUTPUT_EMBEDDING]).max() <= 1e-4
