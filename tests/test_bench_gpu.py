"""benchmarks.gpu on a host without CUDA: one clear line, exit code 2, a JSON file saying it was skipped."""

import json
import subprocess
import sys

import pytest

from benchmarks import gpu


def test_gpu_check_says_skipped_without_cuda(tmp_path):
    if gpu.cuda_missing() is None:
        pytest.skip("this host has CUDA: benchmarks.gpu measures instead")
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == gpu.SKIPPED == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("benchmarks.gpu: skipped: ") and str(out) in lines[0]
    res = json.loads(out.read_text())
    assert res["skipped"] is True and res["reason"] and "torch_cuda" not in res
