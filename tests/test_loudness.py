"""The sound level and the `loud` event in the live pipeline (default model on ONNX Runtime, real Redis): a
clap synthesized into a quiet clip (tests/media.py) opens one loud event; a video-only camera has no level."""

from __future__ import annotations

import math
from datetime import datetime

import jsonschema
import redis
from prometheus_client import REGISTRY

from streamer.config import parse_config
from streamer.outputs import reader
from streamer.pipeline import Pipeline
from tests.media import make_clip
from tests.outputs.schema import ALERT_SCHEMA

CLAP_AT = 2.0  # s into the clip
THRESHOLD_DBFS = -38.0  # at 16 kHz the clip's quiet noise is at -45 dBFS, a window holding the clap at -32.5


def wall(utc: str) -> float:
    return datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp()


def test_a_clap_in_a_quiet_file_camera_opens_and_ends_one_loud_event(redis_server, media_dir, tmp_path):
    clip = make_clip(tmp_path / "clap.mp4", seconds=6, clap_at=[CLAP_AT])
    cfg = parse_config({
        "cameras": [{"id": "yard", "url": str(clip)}, {"id": "mute", "url": str(media_dir / "video_only.mp4")}],
        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")},
        "detect": {"loudness": {"threshold_dbfs": THRESHOLD_DBFS}, "cooldown": 1.0, "top_k": 4},
        "anomaly": {"enabled": False},
        "engine": {"backend": "onnxruntime-cpu"},
    })
    pipe = Pipeline(cfg)
    try:
        pipe.run(duration=40)  # ends with the files (played in real time)
    finally:
        pipe.close()
    client = redis.Redis.from_url(redis_server.url)
    alerts = reader.last(client, "streamer:alerts", 1000)
    loud = [a for a in alerts if a["event"] == "loud"]
    assert [(a["camera"], a["state"]) for a in loud] == [("yard", "start"), ("yard", "end")], loud
    start, end = loud
    assert start["start"] <= CLAP_AT < start["end"] and "reason" not in end  # closed by its cooldown
    assert start["level"]["rms_dbfs"] >= THRESHOLD_DBFS > -44 and start["level"]["peak_dbfs"] > start["level"]["rms_dbfs"]
    assert start["score"] == round(10 ** (start["level"]["rms_dbfs"] / 20), 4)  # the level as an amplitude
    assert end["level"]["rms_dbfs"] < THRESHOLD_DBFS  # the quiet window that closed it
    assert set(start["evidence"]) == {"keyframe", "audio"} and client.get(start["evidence"]["audio"])[:4] == b"RIFF"
    for a in alerts:
        jsonschema.validate(a, ALERT_SCHEMA)
        assert len(a["top"]) == 4 or a.get("reason") in ("source_end", "stop")
        assert [s["score"] for s in a["top"]] == sorted((s["score"] for s in a["top"]), reverse=True)
    # the video-only camera: no level anywhere, never a fake -inf
    assert pipe.camera_status("yard").level is not None and pipe.camera_status("mute").level is None
    assert all(v is None for v in pipe.history.view("mute")["level"])
    assert math.isnan(REGISTRY.get_sample_value("streamer_sound_level_dbfs", {"camera": "mute", "measure": "rms"}))
    assert REGISTRY.get_sample_value("streamer_sound_level_rms_dbfs_count", {"camera": "mute"}) is None
    assert REGISTRY.get_sample_value("streamer_sound_level_rms_dbfs_count", {"camera": "yard"}) >= 10
    assert REGISTRY.get_sample_value("streamer_sound_level_dbfs", {"camera": "yard", "measure": "rms"}) < -42
    stats = reader.latest_stats(client, "streamer:stats")
    assert stats["mute"]["level_rms_dbfs"] is None and stats["yard"]["level_rms_dbfs"] < -42
    heard = wall(start["start_utc"]) + CLAP_AT - start["start"]  # the clap on the wall clock
    print(f"\nloud start alert {wall(start['time']) - heard:.2f} s after the clap (window end {start['end'] - CLAP_AT:.1f} s "
          f"after it, end_to_end {start['latency_ms']['end_to_end']:.0f} ms); end alert {wall(end['time']) - heard:.2f} s after it "
          f"(cooldown {cfg.detect.cooldown:g} s); level {start['level']}")
