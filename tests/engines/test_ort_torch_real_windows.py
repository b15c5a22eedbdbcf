"""ONNX Runtime and the torch reference agree on real windows (decoded from a real clip), in fp32."""

from pathlib import Path

import numpy as np

from engines import spec as espec
from engines.feed import windows_feed
from engines.runtime.onnxruntime import OnnxRuntime
from engines.runtime.torch import TorchRuntime
from streamer.ingest.clip import clip_windows

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"


def test_ort_and_torch_agree_on_real_windows():
    ws = clip_windows(DEMO, espec.load_spec(espec.DEFAULT_MODEL))[:8]
    feed = windows_feed(ws)
    assert feed[espec.INPUT_AUDIO_MASK].all() and feed[espec.INPUT_VIDEO_MASK].all()
    with OnnxRuntime(espec.DEFAULT_MODEL) as ort, TorchRuntime(espec.DEFAULT_MODEL) as torch_rt:
        a, b = ort.infer(feed), torch_rt.infer(feed)
    for name in (espec.OUTPUT_LOGITS, espec.OUTPUT_EMBEDDING):  # float32: the error grows with the values
        scale = max(1.0, float(np.abs(b[name]).max()))  # (YAMNet's AudioSet logits reach several hundred)
        assert np.abs(a[name] - b[name]).max() <= 1e-4 * scale, name
