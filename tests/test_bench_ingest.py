"""The ingest benchmark runs end to end on short files and reports what the README quotes, each number
consistent with the ones it is derived from."""

import json
import math
import re

import pytest

from benchmarks import ingest

KEYS = ("ffmpeg_fps", "naive_fps", "streamer_fps", "streamer_all_frames_fps")


def test_ingest_benchmark_reports_consistent_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CACHE", tmp_path / "bench")
    out = tmp_path / "ingest.json"
    assert ingest.main(["--seconds", "2", "--repeat", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", res["date"]) and res["machine"]["cpus"] >= 1  # the README table's caption
    for name, (_w, _h, fps) in ingest.FILES.items():
        row = res[name]
        for key in KEYS:
            assert math.isfinite(row[key]) and row[key] > 0, (name, key)
            assert row[key] < 100_000, (name, key, "a 2 s file decoded in under 1 ms: nothing was decoded")
        st, ff, nv, al = row["streamer_fps"], row["ffmpeg_fps"], row["naive_fps"], row["streamer_all_frames_fps"]
        assert row["ratio_vs_ffmpeg"] == pytest.approx(st / ff, abs=2e-3)
        assert row["ratio_vs_naive"] == pytest.approx(st / nv, abs=2e-3)
        assert row["all_frames_ratio_vs_ffmpeg"] == pytest.approx(al / ff, abs=2e-3)
        assert row["realtime_streams"] == pytest.approx(st / fps, abs=0.01)
        assert row["runs"]["streamer"] == [st] and row["runs"]["ffmpeg"] == [ff]  # one round: its median
        assert row["ffmpeg_how"]
        assert row["windows"] == 3  # 2 s, 1 s windows, 0.5 s hop
