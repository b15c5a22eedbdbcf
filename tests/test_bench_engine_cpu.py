"""benchmarks/engine_cpu.py on the shipped model and real windows: every figure present and consistent."""

import os

from benchmarks.engine_cpu import WINDOWS_PER_S, measure
from engines.spec import DEFAULT_MODEL


def test_measure_reports_cpu_wall_and_the_camera_share():
    out = measure({"shipped": DEFAULT_MODEL}, threads=1, rounds=1)["shipped"]
    assert out["version"].startswith("5.") and out["cpu_ms_per_window"] > 0 and out["wall_ms_per_window"] > 0
    share = out["cpu_ms_per_window"] / 1000 * WINDOWS_PER_S / (os.cpu_count() or 1) * 100
    assert abs(out["camera_pct_of_machine"] - share) < 0.1
