"""`make wheelhouse`'s own wheel (scripts/wheelhouse.py --self-only: no index needed): it carries the default
model and each backbone's weights once."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_streamers_wheel_carries_the_model_with_each_weight_once(tmp_path):
    r = subprocess.run([sys.executable, "scripts/wheelhouse.py", "--self-only", "--dir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("streamer-*.whl")
    with zipfile.ZipFile(wheel) as z:
        sizes = {i.filename: i.file_size for i in z.infolist() if i.filename.startswith("engines/weights/")}
    for name in ("fusion.onnx", "fusion.json", "fusion.pt", "backbones/yamnet.onnx", "backbones/yamnet.bin",
                 "backbones/movenet_multipose.onnx", "backbones/NOTICE.md"):
        assert f"engines/weights/{name}" in sizes, name
    shipped = {p.relative_to(ROOT).as_posix(): p.stat().st_size for p in (ROOT / "engines/weights").rglob("*") if p.is_file()}
    assert sizes == shipped  # every weights file, nothing else (no stale copies)
    big = sum(s for s in sizes.values() if s > 1_000_000)
    backbones = sizes["engines/weights/backbones/yamnet.bin"] + sizes["engines/weights/backbones/movenet_multipose.onnx"]
    assert big < backbones + 2_000_000, sizes  # the backbones once, plus the heads (~1 MB)
    assert str(wheel.name) in r.stdout
