"""scripts/typecheck_tensorrt.py (mypy against tensorrt-stubs and engines.pycuda_types) passes on our
TensorRT/pycuda glue and fails on a copy of it with wrong calls planted. It fails, not skips, when
mypy or tensorrt-stubs is missing (`make venv` installs both)."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path("scripts") / "typecheck_tensorrt.py"

# (file, right call, wrong call): each wrong call must be reported on its own line
PLANTED = [
    ("engines/runtime/tensorrt.py", "context.execute_async_v3(stream.handle)", 'context.execute_async_v3("not a handle")'),
    ("engines/runtime/tensorrt.py", "context.set_input_shape(name, tuple(arr.shape))",
     "context.set_input_shape(42, tuple(arr.shape))"),
    ("engines/runtime/tensorrt.py", "cuda.memcpy_htod_async, self._device[name], host, stream)",
     "cuda.memcpy_htod_async, host, self._device[name], stream)"),  # host and device swapped
    ("engines/build.py", "config.set_flag(trt.BuilderFlag.FP16)", 'config.set_flag("fp16")'),
    ("engines/calibrate.py", "cuda.mem_alloc, feed[n].nbytes)", "cuda.mem_alloc, feed[n])"),  # an array, not a size
    ("engines/cuda.py", '"Context.push()", ctx.push)', '"Context.push()", ctx.push, 0)'),  # push takes no argument
]


def run_check(root: Path) -> subprocess.CompletedProcess:
    assert importlib.util.find_spec("mypy") is not None, "mypy is missing: pip install -e '.[dev]'"
    return subprocess.run([sys.executable, str(root / SCRIPT)], cwd=root, capture_output=True, text=True, timeout=300)


def copy_tree(dest: Path) -> Path:
    for p in [*ROOT.glob("engines/**/*.py"), ROOT / SCRIPT, ROOT / "pyproject.toml"]:
        target = dest / p.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, target)
    return dest


def plant(root: Path, path: str, right: str, wrong: str) -> int:
    """Replace the one `right` call in `path` by `wrong`; return its line number."""
    p = root / path
    text = p.read_text()
    assert text.count(right) == 1, f"{path} no longer has exactly one {right!r}: update PLANTED"
    p.write_text(text.replace(right, wrong))
    return text[: text.index(right)].count("\n") + 1


def test_every_planted_wrong_call_fails_the_check(tmp_path):
    root = copy_tree(tmp_path)
    lines = [(path, plant(root, path, right, wrong)) for path, right, wrong in PLANTED]
    r = run_check(root)
    assert r.returncode == 1, r.stdout + r.stderr
    reported = set(re.findall(r"^(engines/\S+\.py):(\d+): error", r.stdout, re.M))
    missed = [(path, line) for path, line in lines if (path, str(line)) not in reported]
    assert not missed, f"wrong calls the check let through: {missed}\n{r.stdout}"
    assert len(reported) == len(lines), f"errors besides the planted ones:\n{r.stdout}"
