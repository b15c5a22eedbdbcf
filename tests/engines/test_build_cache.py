"""The TensorRT engine cache without a GPU: the key is pure and complete, and a stale, foreign or
overwritten engine is never loaded."""

import json

import pytest

from engines import build
from engines.errors import ModelLoadError

SHA = "ab" * 32
FACTS = {"tensorrt_version": "10.13.0.35", "gpu": "NVIDIA L4", "compute_capability": "8.9"}


def key(sha=SHA, **kw):
    return build.engine_key(sha, **({**FACTS, "precision": "fp16", "batch": (1, 4, 8)} | kw))


def test_key_is_pure_and_every_input_changes_the_file_name():
    assert key() == key() and key().filename("m") == key().filename("m")  # same inputs, same key
    variants = [key(sha="cd" * 32), key(tensorrt_version="10.14.1.48"), key(gpu="NVIDIA A10"),
                key(compute_capability="8.6"), key(precision="int8"), key(precision="fp32"),
                key(batch=(1, 8, 8)), key(batch=(2, 4, 8)), key(batch=(1, 4, 16))]
    names = {k.filename("m") for k in [key(), *variants]}
    assert len(names) == 1 + len(variants), "every input of the key must change the engine's file name"
    name = key().filename("fusion")
    assert name.startswith("fusion-abababababab-trt10.13.0.35-nvidia-l4-sm89-fp16-b1_4_8-") and name.endswith(".engine")
    assert key().digest() == key().digest() != key(gpu="NVIDIA L4 ").digest()  # names that slug alike still differ


def test_key_rejects_bad_parts():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        key(batch=(4, 2, 8))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        key(batch=(0, 1, 1))
    with pytest.raises(ValueError, match="precision"):
        key(precision="fp8")
    with pytest.raises(ValueError, match="compute capability"):
        key(compute_capability="sm89")
    with pytest.raises(ValueError, match="hex"):
        key(sha="not-a-hash")
    with pytest.raises(ValueError, match="cannot be empty"):
        key(gpu="")


def test_make_key_hashes_the_onnx_bytes_and_its_weight_files(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model-1")
    k1 = build.make_key(onnx, **FACTS)
    onnx.write_bytes(b"model-2")
    k2 = build.make_key(onnx, **FACTS)
    (tmp_path / "m.yamnet.bin").write_bytes(b"weights")  # external data beside the graph counts too
    k3 = build.make_key(onnx, **FACTS)
    assert len({k1, k2, k3}) == 3


def test_default_profile_follows_max_batch():
    assert build.default_profile(8) == (1, 4, 8)
    assert build.default_profile(1) == (1, 1, 1)
    assert build.default_profile(16) == (1, 8, 16)
    with pytest.raises(ValueError):
        build.default_profile(0)


def test_exact_lookup_never_returns_a_stale_or_foreign_engine(tmp_path):
    cache = tmp_path / "cache"
    k = key()
    path = build.store_engine(cache, "m", k, b"plan-bytes")
    assert build.cached_engine(cache, "m", k) == path
    assert build.check_engine(path, k) == b"plan-bytes"
    for other in (key(gpu="NVIDIA T4"), key(tensorrt_version="10.0.1"), key(sha="cd" * 32), key(precision="int8")):
        assert build.cached_engine(cache, "m", other) is None
        with pytest.raises(ModelLoadError, match="built for something else"):
            build.check_engine(path, other)


def test_a_copied_or_overwritten_engine_is_refused(tmp_path):
    cache = tmp_path / "cache"
    k = key()
    path = build.store_engine(cache, "m", k, b"plan-bytes")
    path.write_bytes(b"another plan")  # overwritten under the same name
    with pytest.raises(ModelLoadError, match="does not match the plan recorded"):
        build.check_engine(path, k)
    assert build.cached_engine(cache, "m", k) is None
    path = build.store_engine(cache, "m", k, b"plan-bytes")
    meta = build.sidecar(path)  # a key file edited to claim another model
    d = json.loads(meta.read_text())
    d["key"]["onnx_sha256"] = "cd" * 32
    meta.write_text(json.dumps(d))
    assert build.cached_engine(cache, "m", k) is None
    meta.unlink()  # an engine without its key file is never loaded
    with pytest.raises(ModelLoadError, match="no key file"):
        build.check_engine(path, k)


def test_runtime_lookup_picks_a_profile_that_reaches_max_batch(tmp_path):
    cache = tmp_path / "cache"
    small = build.store_engine(cache, "m", key(batch=(1, 2, 4)), b"a")
    big = build.store_engine(cache, "m", key(batch=(1, 8, 16)), b"b")
    mid = build.store_engine(cache, "m", key(batch=(1, 4, 8)), b"c")
    build.store_engine(cache, "m", key(gpu="NVIDIA T4", batch=(1, 32, 64)), b"d")  # another GPU: never chosen
    assert build.find_engine(cache, key(), 4) == small
    assert build.find_engine(cache, key(), 5) == mid
    assert build.find_engine(cache, key(), 16) == big
    assert build.find_engine(cache, key(), 17) is None
    assert build.find_engine(cache, key(precision="int8"), 1) is None


def test_engine_for_says_how_to_build_when_nothing_fits(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    with pytest.raises(ModelLoadError, match=r"streamer engine build --model .*--precision fp16 --batch 1 4 8"):
        build.engine_for(onnx, tmp_path / "cache", "fp16", 8, **FACTS)
    k = build.make_key(onnx, **FACTS, batch=(1, 8, 16))
    path = build.store_engine(tmp_path / "cache", "m", k, b"plan")
    assert build.engine_for(onnx, tmp_path / "cache", "fp16", 8, **FACTS) == path
    onnx.write_bytes(b"model, retrained")  # the ONNX changed: the old engine is stale
    with pytest.raises(ModelLoadError, match="no TensorRT engine"):
        build.engine_for(onnx, tmp_path / "cache", "fp16", 8, **FACTS)


def test_calibration_cache_is_per_model_and_tensorrt(tmp_path):
    a = build.calibration_cache_path(tmp_path, key())
    assert a != build.calibration_cache_path(tmp_path, key(sha="cd" * 32))
    assert a != build.calibration_cache_path(tmp_path, key(tensorrt_version="10.14.1.48"))
    assert a == build.calibration_cache_path(tmp_path, key(batch=(1, 8, 16)))  # scales do not depend on the profile


def test_cache_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_ENGINE_CACHE", str(tmp_path / "engines"))
    assert build.default_cache() == tmp_path / "engines"
