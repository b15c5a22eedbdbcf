"""The ingest benchmark runs end to end on short files and reports what the README quotes."""

import json

from benchmarks import ingest


def test_ingest_benchmark_reports_every_key(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "CACHE", tmp_path / "bench")
    out = tmp_path / "ingest.json"
    assert ingest.main(["--seconds", "2", "--repeat", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for name in ingest.FILES:
        row = res[name]
        for key in ("ffmpeg_fps", "naive_fps", "streamer_fps", "ratio_vs_ffmpeg", "ratio_vs_naive", "realtime_streams",
                    "streamer_all_frames_fps"):
            assert row[key] > 0, (name, key)
        assert row["windows"] == 3  # 2 s, 1 s windows, 0.5 s hop
