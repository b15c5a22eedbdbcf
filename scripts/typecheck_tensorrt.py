"""mypy over the TensorRT/pycuda code against tensorrt-stubs (no TensorRT needed).

tensorrt-stubs ships .pyi files without a py.typed marker, and a few of its signatures are not valid
Python (a parameter named `in`, a required argument after defaults). This copies the stubs to a
temporary directory, mends those lines, and runs mypy with it on MYPYPATH. Exit code: mypy's.
Install the stubs with `pip install --no-deps tensorrt-stubs` (their declared dependencies would
download TensorRT itself from NVIDIA).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FILES = [
    "engines/runtime/tensorrt.py", "engines/build.py", "engines/calibrate.py", "engines/cuda.py", "engines/pycuda_types.py",
]


def stub_dir(dest: Path) -> Path:
    for pkg in ("tensorrt", "tensorrt_bindings"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{pkg} stubs not found: pip install --no-deps tensorrt-stubs")
        src = Path(list(spec.submodule_search_locations)[0])
        if not any(src.glob("*.pyi")):
            raise SystemExit(f"{src} has no .pyi files: is a real TensorRT installed? (then run mypy directly)")
        shutil.copytree(src, dest / pkg)
    for pyi in dest.rglob("*.pyi"):
        text = pyi.read_text()
        text = re.sub(r"\((self(?:: \w+)?), in: ", r"(\1, in_: ", text)
        text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = 0)")
        pyi.write_text(text)
    return dest


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        stubs = stub_dir(Path(tmp))
        env = {**os.environ, "MYPYPATH": str(stubs)}
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml"), "--follow-imports=silent", *FILES]
        return subprocess.run(cmd, cwd=root, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
