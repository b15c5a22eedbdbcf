"""Our TensorRT/pycuda glue run end to end against a CPU stand-in for the two libraries.

TensorRT and pycuda cannot be installed here, so this file provides small `tensorrt` and
`pycuda.driver` modules that implement the subset of their documented APIs that engines/build.py,
engines/calibrate.py and engines/runtime/tensorrt.py call: device memory is host memory, a CUDA
context stack is a list (allocations and copies need a current context, as with CUDA), and the
"engine" reads its inputs from the device buffers and writes `standin_outputs` of them (simple sums,
not the model) to the output buffers. It checks OUR use of those
APIs (buffer sizing from the profile, copies, shapes, the context push/pop balance, every allocation
freed by close(), errors that name the call, the cache and calibration flow). It says nothing about
TensorRT itself, which has never run on these machines.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from engines import spec as espec
from engines.errors import EngineError, InferenceError, InputError, ModelLoadError
from engines.export import random_feed
from engines.runtime.onnxruntime import cuda_available
from engines.spec import DEFAULT_MODEL, INPUT_NAMES, OUTPUT_NAMES, load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(DEFAULT_MODEL)


# ---- the stand-in pycuda.driver ---------------------------------------------------------------------


class CudaState:
    def __init__(self) -> None:
        self.gpu = "NVIDIA L4"
        self.cc = (8, 9)
        self.stack: list = []
        self.device: dict = {}  # address -> allocation
        self.host: set[int] = set()
        self.next_addr = 0x1000
        self.fail: set[str] = set()
        self.contexts: list = []


def make_cuda(state: CudaState) -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    def need_context(what):
        if what in state.fail:
            raise Error(f"{what}: simulated failure")
        if not state.stack or state.stack[-1].detached:
            raise Error(f"{what}: invalid device context - no currently active context")

    class Context:
        def __init__(self):
            self.detached = False

        def push(self):
            state.stack.append(self)

        @staticmethod
        def pop():
            if not state.stack:
                raise Error("cuCtxPopCurrent: context stack empty")
            state.stack.pop()

        def detach(self):
            self.detached = True

    class Device:
        def __init__(self, i):
            if i != 0:
                raise Error(f"cuDeviceGet: invalid device ordinal {i}")

        def name(self):
            return state.gpu

        def compute_capability(self):
            return state.cc

        def make_context(self):
            ctx = Context()
            state.contexts.append(ctx)
            state.stack.append(ctx)
            return ctx

    class DeviceAllocation:
        def __init__(self, n):
            need_context("mem_alloc")
            self.buf = np.zeros(n, np.uint8)
            self.addr = state.next_addr
            state.next_addr += n + 256
            state.device[self.addr] = self

        def __int__(self):
            return self.addr

        def free(self):
            need_context("DeviceAllocation.free")
            if state.device.pop(self.addr, None) is None:
                raise Error("double free")

    class HostAllocation:
        def __init__(self, count, dtype):
            self.array = np.zeros(count, dtype)
            self.__array_interface__ = self.array.__array_interface__
            state.host.add(id(self))

        def free(self):
            state.host.remove(id(self))

    class Stream:
        handle = 0xBEEF

        def synchronize(self):
            need_context("Stream.synchronize")

    def memcpy_htod_async(dev, host, stream):
        need_context("memcpy_htod_async")
        raw = np.ascontiguousarray(host).view(np.uint8).reshape(-1)
        dev.buf[: raw.size] = raw

    def memcpy_dtoh_async(host, dev, stream):
        need_context("memcpy_dtoh_async")
        raw = host.view(np.uint8).reshape(-1)
        raw[...] = dev.buf[: raw.size]

    cuda.Error = Error
    cuda.init = lambda: None
    cuda.Device = Device
    cuda.Context = Context
    cuda.Stream = lambda: (need_context("cuda.Stream"), Stream())[1]
    cuda.mem_alloc = DeviceAllocation
    cuda.pagelocked_empty = lambda count, dtype: np.asarray(HostAllocation(count, dtype))
    cuda.memcpy_htod_async = memcpy_htod_async
    cuda.memcpy_dtoh_async = memcpy_dtoh_async
    cuda.memcpy_htod = lambda dev, host: memcpy_htod_async(dev, host, None)
    return cuda


# ---- the stand-in tensorrt ----------------------------------------------------------------------------


class TrtState:
    def __init__(self) -> None:
        self.builds = 0
        self.parsed: list[Path] = []  # the ONNX files the builds parsed
        self.calibration_batches: list[dict[str, np.ndarray]] = []
        self.phases: list[str] = []


def make_trt(state: TrtState, cuda_state: CudaState) -> types.ModuleType:
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0.35"
    trt.__file__ = "/stand-in/tensorrt/__init__.py"
    onnx_dtypes = {onnx.TensorProto.FLOAT: np.dtype(np.float32), onnx.TensorProto.UINT8: np.dtype(np.uint8)}

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        FP16, INT8 = "fp16", "int8"

    class Dims(tuple):
        def __new__(cls, shape):
            return super().__new__(cls, [int(d) for d in shape])

    class IProgressMonitor:
        def __init__(self):
            pass

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    class Tensor:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, Dims(shape), dtype

    def io_of(path):
        m = onnx.load(str(path))
        def dims(v):
            return [d.dim_value if d.dim_value else -1 for d in v.type.tensor_type.shape.dim]
        return ([Tensor(v.name, dims(v), onnx_dtypes[v.type.tensor_type.elem_type]) for v in m.graph.input],
                [Tensor(v.name, dims(v), onnx_dtypes[v.type.tensor_type.elem_type]) for v in m.graph.output])

    class Network:
        def __init__(self):
            self.inputs, self.outputs, self.path = [], [], None

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            self.network.inputs, self.network.outputs = io_of(path)
            self.network.path = path
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            assert all(isinstance(d, Dims) for d in (lo, opt, hi))
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+timing"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pool = set(), [], {}
            self.int8_calibrator = self.calibration_profile = self.timing = self.progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return len(self.profiles) - 1

        def set_flag(self, f):
            self.flags.add(f)

        def set_calibration_profile(self, p):
            self.calibration_profile = p
            return True

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing = cache
            return True

        def get_timing_cache(self):
            return self.timing

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            assert flags == 0
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if not cuda_state.stack:
                raise AssertionError("building needs a current CUDA context")
            state.builds += 1
            mon = config.progress_monitor
            mon.phase_start("Building engine", None, 2)
            state.phases.append("Building engine")
            assert mon.step_complete("Building engine", 0) and mon.step_complete("Building engine", 1)
            mon.phase_finish("Building engine")
            (profile,) = config.profiles
            assert set(profile.shapes) == {t.name for t in network.inputs}
            if BuilderFlag.INT8 in config.flags:
                self._calibrate(network, config)
            # like a real plan, it holds what it needs: the ONNX file it was parsed from is gone by now
            # (engines.build parses a temporary file with the one graph, engines.pose.one_graph_file)
            io = {k: [[t.name, list(t.shape), t.dtype.str] for t in ts]
                  for k, ts in (("inputs", network.inputs), ("outputs", network.outputs))}
            state.parsed.append(Path(network.path))
            return json.dumps({"io": io, "profile": profile.shapes, "flags": sorted(config.flags)}).encode()

        def _calibrate(self, network, config):  # what TensorRT does with an IInt8Calibrator, in short
            cal, prof = config.int8_calibrator, config.calibration_profile
            names = [t.name for t in network.inputs]
            for t in network.inputs:
                lo, opt, hi = prof.shapes[t.name]
                assert lo == opt == hi, "calibration runs at one fixed shape"
            assert cal.read_calibration_cache() is None
            while True:
                ptrs = cal.get_batch(names)
                if not ptrs:
                    break
                batch = {}
                for t, p in zip(network.inputs, ptrs):
                    shape = prof.shapes[t.name][1]
                    n = int(np.prod(shape)) * t.dtype.itemsize
                    batch[t.name] = cuda_state.device[p].buf[:n].view(t.dtype).reshape(shape).copy()
                state.calibration_batches.append(batch)
            cal.write_calibration_cache(b"scales")

    class Engine:
        def __init__(self, plan):
            self.plan = plan
            self.inputs, self.outputs = ([Tensor(n, d, np.dtype(t)) for n, d, t in plan["io"][k]] for k in ("inputs", "outputs"))
            self.io = {t.name: t for t in [*self.inputs, *self.outputs]}

        @property
        def num_io_tensors(self):
            return len(self.io)

        def get_tensor_name(self, i):
            return list(self.io)[i]

        def get_tensor_dtype(self, name):
            return self.io[name].dtype

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if any(t.name == name for t in self.inputs) else TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name, index):
            assert index == 0
            return [Dims(s) for s in self.plan["profile"][name]]

        def get_tensor_shape(self, name):
            return self.io[name].shape

        def create_execution_context(self):
            return ExecutionContext(self)

    class ExecutionContext:
        def __init__(self, engine):
            self.engine, self.addr, self.shapes = engine, {}, {}

        def set_tensor_address(self, name, addr):
            self.addr[name] = addr
            return name in self.engine.io

        def set_input_shape(self, name, shape):
            lo, _opt, hi = self.engine.plan["profile"][name]
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = list(shape)
            return True

        def get_tensor_shape(self, name):
            batch = self.shapes[INPUT_NAMES[0]][0]
            return Dims([batch, *self.engine.io[name].shape[1:]])

        def execute_async_v3(self, stream_handle):
            assert isinstance(stream_handle, int) and cuda_state.stack
            feed = {}
            for t in self.engine.inputs:
                shape = self.shapes[t.name]
                n = int(np.prod(shape)) * t.dtype.itemsize
                feed[t.name] = cuda_state.device[self.addr[t.name]].buf[:n].view(t.dtype).reshape(shape)
            outs = standin_outputs(feed, {t.name: t.shape[1] for t in self.engine.outputs})
            for t in self.engine.outputs:
                o = outs[t.name]
                raw = np.ascontiguousarray(o, t.dtype).view(np.uint8).reshape(-1)
                cuda_state.device[self.addr[t.name]].buf[: raw.size] = raw
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            try:
                return Engine(json.loads(bytes(plan)))
            except ValueError:
                return None

    for name, obj in dict(Logger=Logger, TensorIOMode=TensorIOMode, MemoryPoolType=MemoryPoolType,
                          BuilderFlag=BuilderFlag, Dims=Dims, IProgressMonitor=IProgressMonitor,
                          IInt8EntropyCalibrator2=IInt8EntropyCalibrator2, OnnxParser=OnnxParser, Builder=Builder,
                          Runtime=Runtime, nptype=lambda dt: dt.type).items():
        setattr(trt, name, obj)
    return trt


@pytest.fixture
def standin(monkeypatch, tmp_path):
    cs, ts = CudaState(), TrtState()
    cuda, trt = make_cuda(cs), make_trt(ts, cs)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda
    for mod, name in ((trt, "tensorrt"), (pycuda, "pycuda"), (cuda, "pycuda.driver")):
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, origin=f"/stand-in/{name}.py")
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setenv("STREAMER_ENGINE_CACHE", str(tmp_path / "cache"))
    return types.SimpleNamespace(cuda=cs, trt=ts, cache=tmp_path / "cache")


def standin_outputs(feed: dict[str, np.ndarray], widths: dict[str, int]) -> dict[str, np.ndarray]:
    """What the stand-in engine computes: per window, numbers that depend on each of its inputs, so a
    window whose inputs or outputs went to another row, or were cut short, shows up."""
    n = len(feed[espec.INPUT_VIDEO])
    base = (feed[espec.INPUT_VIDEO].reshape(n, -1).mean(axis=1) / 255 + feed[espec.INPUT_AUDIO].mean(axis=1)
            + 2 * feed[espec.INPUT_VIDEO_MASK] + 3 * feed[espec.INPUT_AUDIO_MASK])
    return {name: (base[:, None] * np.arange(1, w + 1)).astype(np.float32) for name, w in widths.items()}


def test_build_caches_the_engine_and_the_runtime_returns_each_windows_outputs(standin):
    from engines.build import build_engine
    from engines.runtime.tensorrt import TensorRTRuntime

    path = build_engine(DEFAULT_MODEL, batch=(1, 4, 8), cache_dir=standin.cache)
    assert path.parent == standin.cache and path.with_suffix(".json").is_file() and standin.trt.builds == 1
    assert list(standin.cache.glob("timing-trt10.13.0.35-sm89.cache")) and standin.trt.phases == ["Building engine"]
    assert json.loads(path.read_text())["flags"] == ["fp16"]
    # TensorRT parsed the one graph (the pose model in front: the window's video in, not poses), from a
    # temporary file in the cache that is gone after the build
    (parsed,) = standin.trt.parsed
    assert parsed.parent.parent == standin.cache and not parsed.exists() and not list(standin.cache.glob("streamer-one-graph-*"))
    assert [t[0] for t in json.loads(path.read_text())["io"]["inputs"]] == list(INPUT_NAMES)
    assert build_engine(DEFAULT_MODEL, batch=(1, 4, 8), cache_dir=standin.cache) == path and standin.trt.builds == 1
    assert standin.cuda.stack == [] and standin.cuda.device == {}  # the build's context was released

    rt = TensorRTRuntime(DEFAULT_MODEL, max_batch=8, cache_dir=standin.cache)
    try:
        assert rt.max_batch == 8 and rt.engine_path == path and standin.cuda.stack == []
        for batch in (1, 5, 8):
            feed = random_feed(SPEC, batch, seed=batch)
            got = rt.infer(feed)
            want = standin_outputs(feed, {k: v.shape[1] for k, v in got.items()})
            for name in OUTPUT_NAMES:
                assert got[name].shape == want[name].shape
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6)  # through the device buffers, row by row
            assert standin.cuda.stack == [], "the context is pushed and popped around every call"
        with pytest.raises(InputError, match="max batch 8"):
            rt.infer(random_feed(SPEC, 9))
        allocated = len(standin.cuda.device)
        assert allocated == len(INPUT_NAMES) + len(OUTPUT_NAMES) and len(standin.cuda.host) == allocated
        sizes = sorted(a.buf.size for a in standin.cuda.device.values())
        assert max(sizes) == 8 * SPEC.frames * SPEC.height * SPEC.width * 3  # video at the profile's max batch
    finally:
        rt.close()
    assert standin.cuda.device == {} and standin.cuda.host == set() and standin.cuda.stack == []
    assert all(c.detached for c in standin.cuda.contexts)
    rt.close()  # idempotent


def test_a_cuda_failure_names_the_call_and_leaves_the_context_balanced(standin):
    from engines.build import build_engine
    from engines.runtime.tensorrt import TensorRTRuntime

    build_engine(DEFAULT_MODEL, batch=(1, 4, 8))
    with TensorRTRuntime(DEFAULT_MODEL, max_batch=8) as rt:
        standin.cuda.fail.add("memcpy_htod_async")
        with pytest.raises(InferenceError, match=r"CUDA call memcpy_htod_async\(video\) failed"):
            rt.infer(random_feed(SPEC, 2))
        assert standin.cuda.stack == []
        standin.cuda.fail.clear()
        assert rt.infer(random_feed(SPEC, 2))["event_logits"].shape == (2, len(SPEC.classes))
    standin.cuda.fail.add("mem_alloc")
    with pytest.raises(EngineError, match=r"CUDA call mem_alloc\(video, \d+ B\) failed"):
        TensorRTRuntime(DEFAULT_MODEL, max_batch=8)
    assert standin.cuda.device == {} and standin.cuda.stack == [], "a failed open frees what it allocated"


def test_a_foreign_or_stale_engine_is_never_loaded(standin):
    from engines.build import build_engine
    from engines.runtime.tensorrt import TensorRTRuntime

    path = build_engine(DEFAULT_MODEL, batch=(1, 4, 8))
    with pytest.raises(ModelLoadError, match="max batch >= 16"):
        TensorRTRuntime(DEFAULT_MODEL, max_batch=16)  # the profile does not reach it
    standin.cuda.gpu = "NVIDIA A10"  # the cache moved to another GPU
    with pytest.raises(ModelLoadError, match="no TensorRT engine .* on NVIDIA A10"):
        TensorRTRuntime(DEFAULT_MODEL)
    with pytest.raises(ModelLoadError, match="built for something else"):
        TensorRTRuntime(DEFAULT_MODEL, engine_path=path)  # even when named explicitly
    standin.cuda.gpu = "NVIDIA L4"
    path.write_bytes(path.read_bytes().replace(b'"fp16"', b'"fp32"'))  # overwritten plan
    with pytest.raises(ModelLoadError, match="does not match the plan recorded"):
        TensorRTRuntime(DEFAULT_MODEL)
    assert standin.cuda.stack == [] and standin.cuda.device == {}


def test_int8_calibrates_on_recorded_windows_at_the_opt_batch(standin, tmp_path):
    from engines.build import build_engine, calibration_cache_path, make_key
    from engines.calibrate import record
    from streamer.ingest.clip import clip_windows

    windows = clip_windows(ROOT / "streamer" / "assets" / "demo.mp4", SPEC)[:9]
    record(windows, tmp_path / "calib", per_file=4)
    path = build_engine(DEFAULT_MODEL, precision="int8", batch=(1, 4, 8), calibration_dir=tmp_path / "calib")
    assert json.loads(path.read_text())["flags"] == ["fp16", "int8"]
    batches = standin.trt.calibration_batches
    assert len(batches) == 2 and all(b["video"].shape == (4, SPEC.frames, SPEC.height, SPEC.width, 3) for b in batches)
    np.testing.assert_array_equal(batches[1]["video"][3], windows[7].video)  # the recorded windows, in order
    np.testing.assert_array_equal(batches[0]["audio"][0], windows[0].audio)
    key = make_key(DEFAULT_MODEL, tensorrt_version="10.13.0.35", gpu="NVIDIA L4", compute_capability="8.9",
                   precision="int8", batch=(1, 4, 8))
    assert calibration_cache_path(standin.cache, key).read_bytes() == b"scales"
    assert standin.cuda.device == {} and standin.cuda.stack == [], "the calibrator's buffers are freed"


def test_selector_uses_tensorrt_when_an_engine_exists_and_falls_back_when_not(standin, caplog):
    from engines.build import build_engine
    from engines.runtime.select import open_runtime, tensorrt_importable

    assert tensorrt_importable()
    with open_runtime(DEFAULT_MODEL, backend="auto", threads=1) as rt:
        assert rt.backend == ("onnxruntime-cuda" if cuda_available() else "onnxruntime")  # nothing built yet: ONNX Runtime, with a warning that says why
    assert "streamer engine build" in caplog.text
    build_engine(DEFAULT_MODEL, batch=(1, 4, 8))
    with open_runtime(DEFAULT_MODEL, backend="auto", max_batch=8) as rt:
        assert rt.backend == "tensorrt" and rt.precision == "fp16"
