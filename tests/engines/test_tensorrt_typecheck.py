"""mypy over the TensorRT/pycuda modules against tensorrt-stubs (no TensorRT needed).

tensorrt-stubs installs `tensorrt/__init__.pyi` without a py.typed marker, so a plain mypy run treats
`tensorrt` as missing (every call is Any and the check proves nothing). This runs the command
`mypy engines/runtime/tensorrt.py engines/build.py engines/calibrate.py --ignore-missing-imports`
twice: as is, and with a mended copy of the stubs on MYPYPATH (scripts/typecheck_tensorrt.py mends
the few lines of the stubs that are not valid Python), and checks with a deliberately wrong call that
the stubs are really in force. It fails, not skips, when mypy or tensorrt-stubs is missing.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = ["engines/runtime/tensorrt.py", "engines/build.py", "engines/calibrate.py"]
INSTALL = "pip install --no-deps tensorrt-stubs (its declared dependencies would download TensorRT)"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    assert importlib.util.find_spec("mypy") is not None, "mypy is missing: pip install -e '.[dev]'"
    found = importlib.util.find_spec("tensorrt_stubs") or importlib.util.find_spec("tensorrt_bindings")
    assert found is not None, f"tensorrt-stubs is not installed: {INSTALL}"
    spec = importlib.util.spec_from_file_location("typecheck_tensorrt", ROOT / "scripts" / "typecheck_tensorrt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        return mod.stub_dir(tmp_path_factory.mktemp("stubs"))
    except SystemExit as e:
        pytest.fail(f"tensorrt-stubs unusable: {e}; {INSTALL}")


def mypy(*args, mypypath=None):
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    if mypypath is not None:
        env["MYPYPATH"] = str(mypypath)
    return subprocess.run([sys.executable, "-m", "mypy", *args, "--ignore-missing-imports"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


def test_tensorrt_modules_type_check_against_tensorrt_stubs(stubs, tmp_path):
    r = mypy(*FILES, mypypath=stubs)
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout + r.stderr
    plain = mypy(*FILES)  # the same command without the stubs on the path
    assert plain.returncode == 0, plain.stdout + plain.stderr
    wrong = tmp_path / "wrong_trt_call.py"  # negative control: the stubs must catch a wrong call
    wrong.write_text("import tensorrt as trt\n\ndef f(ctx: trt.IExecutionContext) -> None:\n"
                     "    ctx.execute_async_v3('not a stream handle')\n")
    bad = mypy(str(wrong), mypypath=stubs)
    assert bad.returncode == 1 and "execute_async_v3" in bad.stdout, bad.stdout + bad.stderr
