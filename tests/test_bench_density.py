"""The density benchmark end to end on a short run (1 camera, short files and periods): every key docs/benchmarks.md quotes, and figures that agree with one another."""

import json

from benchmarks import density, ingest


def test_density_benchmark_reports_every_key(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CACHE", tmp_path / "bench")
    out = tmp_path / "density.json"
    assert density.main(["--quick", "--cases", "720p25", "--file-seconds", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["machine"]["cpus"] >= 1 and res["date"]
    case = res["cases"]["720p25"]
    assert case["decode_only_bound"] > 0
    step = case["steps"][0]
    assert step["cameras"] == 1 and "error" not in step, step
    assert step["windows"] > 0 and step["p99_ms"] > 0 and isinstance(step["dropped"], int)
    # the camera is paced on the clock: the windows detected and dropped in the period are at most the
    # windows due in it (those already queued at its start aside)
    assert step["windows"] + step["dropped"] <= step["windows_due"] + 5, step
    assert set(step["cpu_share"]) == {"decode", "windowing", "ingest_other", "engine", "detection_delivery"}
    assert abs(sum(step["cpu_share"].values()) - 1) < 0.01
    assert step["cpu_s"]["engine"] > 0 and step["cpu_s"]["decode"] > 0
    assert case["cameras_realtime"] in (0, 1)
    if case["cameras_realtime"]:
        assert case["p99_ms_at_max"] == step["p99_ms"] and case["cpu_share_at_max"] == step["cpu_share"]
