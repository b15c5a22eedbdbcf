"""An offline wheelhouse: streamer's own wheel and the wheels it needs beyond torch, for a host without
an index (a GPU host brings its own CUDA torch).

    python scripts/wheelhouse.py [--dir wheelhouse] [--python 3.12] [--self-only]

- streamer's wheel is built from this checkout (`pip wheel --no-deps`); it carries the default model
  and its backbones, each weight once (see engines/weights/backbones/NOTICE.md).
- Its runtime dependencies (pyproject.toml `[project] dependencies`, torch never among them) are fetched
  as binary wheels for CPython `--python` on manylinux x86_64 (`pip download --only-binary=:all:`), so
  the target needs no compiler. `--self-only` builds streamer's wheel alone (no index needed).
- Install on the target: `pip install --no-index --find-links wheelhouse streamer`.
Prints the wheels and their total size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def requirements() -> list[str]:
    """The runtime dependencies from pyproject.toml, without their comments."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    if any(d.split(">")[0].split("=")[0].strip() == "torch" for d in deps):
        raise SystemExit("pyproject.toml: torch is a runtime dependency; the wheelhouse leaves it to the host")
    return deps


def build_self(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
                   check=True)


def download(out: Path, python: str) -> None:
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python,
                    "--implementation", "cp", *plat, "-d", str(out), *requirements()], check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=str(REPO / "wheelhouse"))
    p.add_argument("--python", default="3.12", help="target CPython version (default 3.12, the GPU hosts')")
    p.add_argument("--self-only", action="store_true", help="streamer's own wheel only (no index needed)")
    a = p.parse_args(argv)
    out = Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    build_self(out)
    if not a.self_only:
        download(out, a.python)
    wheels = sorted(out.glob("*.whl"))
    for w in wheels:
        print(f"{w.stat().st_size / 1e6:8.1f} MB  {w.name}")
    print(f"{sum(w.stat().st_size for w in wheels) / 1e6:8.1f} MB  in {len(wheels)} wheels, {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
