"""Everything around the TensorRT runtime that runs without a GPU or TensorRT: the op support of the
exported graph, the one-line error when TensorRT is missing, and the calibration recording."""

import json
from pathlib import Path

import numpy as np
import pytest

from engines import build, trt_support
from engines.errors import BackendUnavailable, EngineError
from engines.runtime.onnxruntime import cuda_available
from engines.runtime.select import TENSORRT_MISSING, open_runtime, tensorrt_importable
from engines.spec import DEFAULT_MODEL, INPUT_NAMES, load_spec

ROOT = Path(__file__).resolve().parents[2]
HINT = "backend 'tensorrt' needs TensorRT and pycuda: pip install 'streamer[gpu]' on a machine with an NVIDIA driver"


def test_the_supported_list_names_its_source_and_version():
    doc = json.loads((ROOT / "engines" / "trt_ops.json").read_text())
    assert "onnx-tensorrt" in doc["source"] and "operators.md" in doc["source"]
    assert doc["tensorrt"].startswith("10.") and doc["opset_min"] <= 17 <= doc["opset_max"]
    assert doc["supported"] == sorted(set(doc["supported"])) and "uint8" in doc["io_dtypes"]


def test_every_op_of_the_default_graph_is_supported_by_tensorrt():

    from engines.pose import one_graph

    doc = json.loads((ROOT / "engines" / "trt_ops.json").read_text())
    model = one_graph(DEFAULT_MODEL)  # what TensorRT builds: the pose model in front of fusion.onnx
    scan = next(n for n in model.graph.node if n.op_type == "Scan")  # the pose model, run on each frame
    body = next(a.g for a in scan.attribute if a.name == "body")
    ops = {n.op_type for n in model.graph.node} | {n.op_type for n in body.node}
    missing = sorted(ops - set(doc["supported"]))
    assert not missing, f"ops TensorRT {doc['tensorrt']}'s ONNX parser does not list: {missing}"
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert doc["opset_min"] <= opset <= doc["opset_max"], f"opset {opset} outside TensorRT's range"
    report = trt_support.tensorrt_op_report(DEFAULT_MODEL)  # the same check plus axes/domain/I/O-type rules
    assert report["unsupported"] == [] and report["ops"] == sorted(ops)


def test_the_op_report_catches_what_tensorrt_would_refuse(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])
    z = helper.make_tensor_value_info("z", TensorProto.DOUBLE, ["b", 1])
    axes = helper.make_node("Shape", ["x"], ["ax"])  # a computed axes tensor
    graph = helper.make_graph(
        [helper.make_node("Celu", ["x"], ["c"]), helper.make_node("StringNormalizer", ["c"], ["y"]), axes,
         helper.make_node("ReduceSum", ["x", "ax"], ["r"]), helper.make_node("Cast", ["r"], ["z"], to=TensorProto.DOUBLE)],
        "g", [x], [y, z])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    problems = "\n".join(trt_support.tensorrt_op_report(path)["unsupported"])
    assert "StringNormalizer is not in the TensorRT" in problems and "Celu" not in problems
    assert "ReduceSum" in problems and "computed tensor" in problems
    assert "network I/O z is type 11" in problems


def test_tensorrt_backend_without_tensorrt_is_one_clear_line():
    assert not tensorrt_importable()  # this machine: no TensorRT, no pycuda (tensorrt-stubs does not count)
    assert TENSORRT_MISSING == HINT
    with pytest.raises(BackendUnavailable) as e:
        open_runtime(DEFAULT_MODEL, backend="tensorrt")
    assert str(e.value) == HINT
    import engines.runtime.tensorrt as trt_runtime  # importable without tensorrt or pycuda

    with pytest.raises(BackendUnavailable, match="needs TensorRT and pycuda") as e:
        trt_runtime.TensorRTRuntime(DEFAULT_MODEL)
    assert "\n" not in str(e.value)
    with pytest.raises(BackendUnavailable, match="needs TensorRT and pycuda"):
        build.build_engine(DEFAULT_MODEL)


def test_auto_falls_back_to_onnxruntime_without_tensorrt():
    with open_runtime(DEFAULT_MODEL, backend="auto", threads=1) as rt:
        assert rt.backend == ("onnxruntime-cuda" if cuda_available() else "onnxruntime")


def test_calibration_records_real_windows_and_rebatches_them(tmp_path):
    from engines.calibrate import batches, entropy_calibrator, record
    from streamer.ingest.clip import clip_windows

    windows = clip_windows(ROOT / "streamer" / "assets" / "demo.mp4", load_spec(DEFAULT_MODEL))[:11]
    assert record(windows, tmp_path, limit=10, per_file=4) == 10  # files of 4, 4, 2
    assert len(list(tmp_path.glob("windows-*.npz"))) == 3
    feeds = list(batches(tmp_path, 3))
    assert len(feeds) == 3  # 10 windows -> 3 batches of 3, the remainder of 1 left out
    assert all(f[n].shape[0] == 3 for f in feeds for n in INPUT_NAMES)
    assert feeds[0]["video"].dtype == np.uint8 and feeds[0]["audio"].dtype == np.float32
    np.testing.assert_array_equal(feeds[1]["video"][0], windows[3].video)  # order kept across files
    with pytest.raises(BackendUnavailable, match="needs TensorRT and pycuda"):
        entropy_calibrator(tmp_path, tmp_path / "calib.cache", 3)  # going further needs TensorRT
    with pytest.raises(EngineError, match="streamer engine calibrate"):
        list(batches(tmp_path / "empty", 3))
