"""Everything around the TensorRT path that runs without a GPU: cache keys, op support, errors, types."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engines import build
from engines.errors import BackendUnavailable, EngineError
from engines.export import graph_ops
from engines.runtime.select import open_runtime
from engines.spec import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]


def key(onnx, **kw):
    args = {"tensorrt_version": "10.13.0", "gpu": "NVIDIA L4", "compute_capability": "8.9", "precision": "fp16",
            "batch": (1, 8, 16)} | kw
    return build.make_key(onnx, **args)


def test_cache_key_changes_with_everything_that_invalidates_an_engine(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model-1")
    base = key(onnx)
    variants = [key(onnx, tensorrt_version="10.14.0"), key(onnx, gpu="NVIDIA A10"), key(onnx, compute_capability="8.6"),
                key(onnx, precision="int8"), key(onnx, batch=(1, 4, 16))]
    onnx.write_bytes(b"model-2")
    variants.append(key(onnx))
    names = {k.filename("m") for k in [base, *variants]}
    assert len(names) == 7, "every input of the key must change the engine's file name"
    assert base.filename("m").startswith("m-") and "trt10.13.0-nvidia-l4-sm89-fp16-b1_8_16" in base.filename("m")


def test_stale_or_foreign_engine_is_never_loaded(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    k = key(onnx)
    path = build.store_engine(tmp_path / "cache", "m", k, b"plan")
    assert build.cached_engine(tmp_path / "cache", "m", k) == path
    assert build.cached_engine(tmp_path / "cache", "m", key(onnx, gpu="NVIDIA T4")) is None  # another GPU
    meta = path.with_suffix(".json")  # a sidecar that does not match the file's key (copied engine)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "onnx_sha256": "0" * 64}))
    assert build.cached_engine(tmp_path / "cache", "m", k) is None


def test_bad_profiles_and_precisions_are_rejected(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ValueError, match="min <= opt <= max"):
        key(onnx, batch=(4, 2, 8))
    with pytest.raises(ValueError, match="precision"):
        key(onnx, precision="fp8")


def test_every_op_of_the_default_graph_is_supported_by_the_tensorrt_parser():
    doc = json.loads((ROOT / "engines" / "trt_ops.json").read_text())
    assert "onnx-tensorrt" in doc["source"]
    missing = sorted(graph_ops(DEFAULT_MODEL) - set(doc["supported"]))
    assert not missing, f"ops TensorRT's ONNX parser may not support: {missing}"


def test_tensorrt_backend_without_tensorrt_is_one_clear_error():
    with pytest.raises(BackendUnavailable, match=r"pip install 'streamer\[gpu\]'"):
        open_runtime(DEFAULT_MODEL, backend="tensorrt")
    from engines.runtime.tensorrt import TensorRTRuntime  # importable without tensorrt

    with pytest.raises(BackendUnavailable, match="needs TensorRT and pycuda"):
        TensorRTRuntime(DEFAULT_MODEL)
    with pytest.raises(BackendUnavailable, match="needs TensorRT and pycuda"):
        build.build_engine(DEFAULT_MODEL)


def test_int8_calibration_records_real_windows(tmp_path):
    from engines.calibrate import entropy_calibrator, record
    from engines.spec import load_spec

    n = record(str(ROOT / "streamer" / "assets" / "demo.mp4"), tmp_path, load_spec(DEFAULT_MODEL), windows=16, batch=8)
    assert n == 16 and len(list(tmp_path.glob("batch-*.npz"))) == 2
    with pytest.raises(BackendUnavailable):
        entropy_calibrator(tmp_path, tmp_path / "calib.cache")  # needs TensorRT to go further
    with pytest.raises((BackendUnavailable, EngineError)):
        entropy_calibrator(tmp_path / "empty", tmp_path / "calib.cache")


def test_tensorrt_code_type_checks_against_tensorrt_stubs():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "typecheck_tensorrt.py")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
