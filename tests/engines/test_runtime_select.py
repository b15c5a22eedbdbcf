"""engine.backend x engine.device: what open_runtime picks, why it says it did, and the errors, on a host
without a GPU (as CI and the developers' machines are)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from engines.errors import BackendUnavailable
from engines.runtime import open_runtime
from engines.runtime.select import torch_cuda_missing

REPO = Path(__file__).resolve().parents[2]


def test_this_host_has_no_cuda_for_torch():
    assert torch_cuda_missing() is not None  # what the tests below rely on


def test_auto_without_a_gpu_is_onnxruntime_cpu_and_says_why(tiny_onnx, caplog):
    caplog.set_level(logging.INFO, logger="engines.runtime.select")
    with open_runtime(tiny_onnx, threads=1) as rt:
        assert (rt.backend, rt.device) == ("onnxruntime", "cpu")
        why = rt.chosen_because
    assert why.startswith("TensorRT: ") and "torch on CUDA: " in why and why.endswith("ONNX Runtime on the CPU")
    assert any(why in r.getMessage() and "onnxruntime on cpu" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("backend, want", [("auto", "onnxruntime"), ("onnxruntime", "onnxruntime"),
                                           ("onnxruntime-cpu", "onnxruntime"), ("torch", "torch")])
def test_device_cpu_runs_on_the_cpu(tiny_onnx, backend, want):
    with open_runtime(tiny_onnx, backend=backend, device="cpu", threads=1) as rt:
        assert (rt.backend, rt.device) == (want, "cpu") and rt.chosen_because


def test_torch_on_device_auto_without_a_gpu_is_the_cpu(tiny_onnx):
    with open_runtime(tiny_onnx, backend="torch", threads=1) as rt:
        assert rt.device == "cpu" and rt.chosen_because.startswith("engine.backend is torch, engine.device auto -> cpu: ")


@pytest.mark.parametrize("backend, device, message", [
    ("auto", "cuda", "engine.device is cuda but no backend can use a CUDA GPU here: TensorRT: "),
    ("auto", "cuda:1", "engine.device is cuda:1 but no backend can use a CUDA GPU here: "),
    ("torch", "cuda", "engine.device is 'cuda' but torch "),
    ("onnxruntime", "cuda", "engine.device cuda: ONNX Runtime has no CUDA provider here"),
    ("onnxruntime-cpu", "cuda", "engine.backend onnxruntime-cpu never uses a GPU, and engine.device is cuda"),
    ("tensorrt", "cpu", "engine.backend tensorrt runs on a GPU only, and engine.device is cpu"),
])
def test_a_gpu_asked_for_and_missing_is_one_clear_error(tiny_onnx, backend, device, message):
    with pytest.raises(BackendUnavailable) as e:
        open_runtime(tiny_onnx, backend=backend, device=device)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_unknown_device_names_the_setting(tiny_onnx, device):
    with pytest.raises(ValueError, match=r"^engine.device .*: expected auto, cpu, cuda or cuda:N$"):
        open_runtime(tiny_onnx, device=device)


def test_auto_on_a_cpu_host_does_not_import_torch(tiny_onnx):
    code = (
        "import sys\n"
        "from engines.runtime import open_runtime\n"
        f"rt = open_runtime({str(tiny_onnx)!r}, threads=1)\n"
        "assert rt.device == 'cpu', rt.device\n"
        "rt.close()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
