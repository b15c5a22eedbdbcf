from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.errors import BackendUnavailable, EngineError, InputError, ModelLoadError
from engines.export import random_feed
from engines.runtime import Runtime, open_runtime
from engines.runtime.onnxruntime import OnnxRuntime
from engines.runtime.select import TENSORRT_MISSING, tensorrt_importable
from engines.spec import INPUT_AUDIO, INPUT_VIDEO, INPUT_VIDEO_MASK, OUTPUT_EMBEDDING, OUTPUT_LOGITS

REPO = Path(__file__).resolve().parents[2]


def test_onnxruntime_infer_and_input_spec(tiny_onnx, tiny_spec):
    with OnnxRuntime(tiny_onnx, intra_op_threads=1) as rt:
        assert isinstance(rt, Runtime) and rt.backend == "onnxruntime" and rt.spec == tiny_spec
        spec = rt.input_spec()
        assert spec[INPUT_VIDEO] == ((-1, 2, 64, 64, 3), np.dtype(np.uint8))
        assert spec[INPUT_AUDIO] == ((-1, 16000), np.dtype(np.float32))
        out = rt.infer(random_feed(tiny_spec, 4))
        assert out[OUTPUT_LOGITS].shape == (4, 3) and out[OUTPUT_EMBEDDING].shape == (4, 1046)
    assert rt.closed
    with pytest.raises(EngineError, match="closed"):
        rt.infer(random_feed(tiny_spec, 1))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.update(clip=f.pop(INPUT_VIDEO)), r"missing \['video'\], unexpected \['clip'\]"),
        (lambda f: f.update(video=f[INPUT_VIDEO].astype(np.float32)), "'video' has dtype float32, expected uint8"),
        (lambda f: f.update(audio=f[INPUT_AUDIO].astype(np.float64)), "'audio' has dtype float64"),
        (lambda f: f.update(audio=f[INPUT_AUDIO][:, :100]), r"'audio' has shape \[2, 100\], expected \[B, 16000\]"),
        (lambda f: f.update(video_mask=np.ones(3, np.float32)), "disagree on the batch size"),
        (lambda f: f.update(video=f[INPUT_VIDEO].tolist()), "must be a numpy array"),
    ],
)
def test_infer_rejects_bad_feeds(tiny_onnx, tiny_spec, change, message):
    feed = random_feed(tiny_spec, 2)
    change(feed)
    with OnnxRuntime(tiny_onnx) as rt, pytest.raises(InputError, match=message):
        rt.infer(feed)


def test_input_error_is_a_value_error(tiny_onnx, tiny_spec):
    with OnnxRuntime(tiny_onnx) as rt, pytest.raises(ValueError):
        rt.infer({INPUT_VIDEO_MASK: np.ones(1, np.float32)})


@pytest.mark.skipif(tensorrt_importable(), reason="TensorRT is installed here")
def test_tensorrt_without_tensorrt_is_one_clear_error(tiny_onnx):
    with pytest.raises(BackendUnavailable) as e:
        open_runtime(tiny_onnx, backend="tensorrt")
    assert str(e.value) == TENSORRT_MISSING
    assert "pip install 'streamer[gpu]'" in str(e.value) and isinstance(e.value, EngineError)


def test_auto_falls_back_and_logs(tiny_onnx, caplog):
    caplog.set_level(logging.INFO, logger="engines.runtime.select")
    with open_runtime(tiny_onnx) as rt:
        assert rt.backend.startswith("onnxruntime")
    assert any("engine backend: onnxruntime" in r.getMessage() for r in caplog.records)


def test_load_errors(tmp_path, tiny_onnx):
    with pytest.raises(ModelLoadError, match="not found"):
        open_runtime(tmp_path / "nope.onnx")
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(ModelLoadError, match="metadata"):
        open_runtime(lonely, backend="onnxruntime")
    (tmp_path / "lonely.json").write_text(tiny_onnx.with_suffix(".json").read_text())
    with pytest.raises(ModelLoadError, match="state dict"):
        open_runtime(lonely, backend="torch")
    (tmp_path / "lonely.json").write_text(json.dumps({"bogus": 1}))
    with pytest.raises(ModelLoadError, match="bogus"):
        open_runtime(lonely, backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        open_runtime(tiny_onnx, backend="openvino")


def test_onnxruntime_path_does_not_import_torch(tiny_onnx):
    code = (
        "import sys, numpy as np\n"
        "import engines\n"
        "from engines.runtime import open_runtime\n"
        "from engines.export import random_feed\n"
        f"rt = open_runtime({str(tiny_onnx)!r}, backend='onnxruntime', threads=1)\n"
        "rt.infer(random_feed(rt.spec, 2)); rt.close()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
