"""`streamer engine build | calibrate | info` through `add_parser`, as the main CLI wires it."""

import argparse
import json
from pathlib import Path

from engines.spec import DEFAULT_MODEL
from streamer.inference.cli import add_parser

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"


def run(argv, capsys):
    p = argparse.ArgumentParser(prog="streamer")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    code = args.fn(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_reports_ops_tensorrt_support_and_cached_engines(capsys, tmp_path):
    from engines import build

    key = build.make_key(DEFAULT_MODEL, tensorrt_version="10.13.0.35", gpu="NVIDIA L4", compute_capability="8.9")
    build.store_engine(tmp_path, "fusion", key, b"plan")
    code, out, _ = run(["engine", "info", "--cache", str(tmp_path), "--max-batch", "16"], capsys)
    info = json.loads(out)
    assert code == 0 and info["model"] == str(DEFAULT_MODEL) and info["tensorrt_unsupported_ops"] == []
    assert info["opset"] == 17 and "Conv" in info["ops"] and "TensorRT 10." in info["tensorrt_ops"]
    assert info["tensorrt_importable"] is False and info["default_profile"] == [1, 8, 16]
    assert [e["gpu"] for e in info["cached_engines"]] == ["NVIDIA L4"]
    rt = info["runtime"]  # what `streamer run` would open here (no GPU): ONNX Runtime on the CPU, and why
    assert (rt["backend"], rt["device"]) == ("onnxruntime", "cpu") and rt["chosen_because"].endswith("ONNX Runtime on the CPU")


def test_info_reports_the_runtime_of_the_settings(capsys, tmp_path):
    code, out, _ = run(["engine", "info", "--cache", str(tmp_path), "--backend", "torch", "--device", "cpu"], capsys)
    rt = json.loads(out)["runtime"]
    assert code == 0 and rt == {"backend": "torch", "device": "cpu", "precision": "fp32",
                                "chosen_because": "engine.backend is torch"}
    code, out, _ = run(["engine", "info", "--cache", str(tmp_path), "--device", "cuda"], capsys)
    rt = json.loads(out)["runtime"]
    assert code == 0 and rt["error"].startswith("engine.device is cuda but no backend can use a CUDA GPU here: ")


def test_calibrate_records_windows_from_a_real_file(capsys, tmp_path):
    code, out, _ = run(["engine", "calibrate", str(DEMO), "--out", str(tmp_path), "--windows", "6"], capsys)
    assert code == 0 and "recorded 6 windows" in out
    assert list(tmp_path.glob("windows-*.npz"))


def test_build_without_tensorrt_is_one_clear_line(capsys, tmp_path):
    code, _, err = run(["engine", "build", "--cache", str(tmp_path)], capsys)
    assert code == 1
    assert err.strip().startswith("streamer engine build: backend 'tensorrt' needs TensorRT and pycuda: "
                                  "pip install 'streamer[gpu]' on a machine with an NVIDIA driver")
    assert len(err.strip().splitlines()) == 1
