"""Substreams: `cameras[].detect_url` is decoded for the model, `url` (the main stream) only for evidence."""

import cv2
import numpy as np
import pytest
import redis

from engines.spec import ModelSpec
from streamer.config import CameraConfig, parse_config
from streamer.errors import ConfigError
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import SourceReader, probe_geometry
from streamer.outputs.reader import last as read_stream
from streamer.pipeline import Pipeline
from tests.media import make_clip

MAIN = (640, 360)
SUB = (160, 96)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A camera's two streams: the same 4 s scene at two sizes; the main one carries the audio (clicks)."""
    d = tmp_path_factory.mktemp("substream")
    main = make_clip(d / "main.mp4", seconds=4, size=MAIN, click_at=[1.2, 2.7], flash_at=[2.0])
    sub = make_clip(d / "sub.mp4", seconds=4, size=SUB, audio_codec=None, flash_at=[2.0])
    sub_aac = make_clip(d / "sub_aac.mp4", seconds=4, size=SUB, click_at=[0.6], flash_at=[2.0], seed=1)
    return main, sub, sub_aac


def _windows(url, opts=None):
    return list(SourceReader(str(url), "c", probe_geometry(ModelSpec(), 0.5), opts or SourceOptions()).windows())


def test_windows_come_from_the_detect_stream_and_keyframes_from_the_main_one(pair):
    main, sub, _ = pair
    alone = _windows(sub)
    both = _windows(sub, SourceOptions(main_url=str(main), keyframe_width=1920))
    main_alone = _windows(main)
    assert len(both) == len(alone) == len(main_alone) == 7
    keys = [w.keyframe for w in both]
    assert 1 < len({id(k) for k in keys}) < len(keys)  # the main stream's keyframes (one a second), shared while unchanged, never copied
    for a, b, m, kf in zip(alone, both, main_alone, keys):
        assert (a.start, a.end) == (b.start, b.end)
        np.testing.assert_array_equal(a.video, b.video)  # the picture is the detect stream's
        assert a.audio_mask == 0.0 and b.audio_mask == 1.0  # the detect stream has none: the main stream's
        np.testing.assert_array_equal(b.audio, m.audio)  # placed on the same timeline as the main stream alone
        assert kf.shape == (MAIN[1], MAIN[0], 3)  # full resolution, from the main stream
    # the keyframe is the main stream's newest at or before the window (keyframe every second; white at 2 s)
    flash = [w for w in both if w.keyframe.mean() > 250]
    assert [w.start for w in flash] == [1.5, 2.0]


def test_audio_stays_with_the_detect_stream_when_it_has_some(pair):
    main, _, sub_aac = pair
    alone = _windows(sub_aac)
    both = _windows(sub_aac, SourceOptions(main_url=str(main), keyframe_width=320))
    for a, b, kf in zip(alone, both, [w.keyframe for w in both], strict=True):
        np.testing.assert_array_equal(a.video, b.video)
        np.testing.assert_array_equal(a.audio, b.audio)
        assert kf.shape == (180, 320, 3)  # main stream, capped at keyframe_width


def test_detect_url_is_validated_and_redacted(pair, tmp_path):
    main, sub, _ = pair
    field = CameraConfig.model_fields["detect_url"]
    assert field.description and "main stream" in field.description
    cam = parse_config({"cameras": [{"id": "a", "url": "rtsp://u:pw@10.0.0.1/main", "detect_url": "rtsp://u:pw@10.0.0.1/sub"}]}).cameras[0]
    assert cam.detect_url == "rtsp://u:pw@10.0.0.1/sub"
    with pytest.raises(ConfigError) as e:
        parse_config({"cameras": [{"id": "a", "url": str(main), "detect_url": "gopher://u:topsecret@h/sub"}]})
    assert "detect_url" in str(e.value) and "topsecret" not in str(e.value)
    with pytest.raises(ConfigError, match="file not found"):
        parse_config({"cameras": [{"id": "a", "url": str(main), "detect_url": str(tmp_path / "none.mp4")}]})
    with pytest.raises(ConfigError, match="detect_url"):
        parse_config({"cameras": [{"id": "a", "url": "mic:0", "detect_url": str(sub)}]})
    with pytest.raises(ConfigError, match="detect_urll"):
        parse_config({"cameras": [{"id": "a", "url": str(main), "detect_urll": str(sub)}]})  # extra=forbid


def test_start_alert_evidence_has_the_main_streams_resolution(pair, redis_server, tmp_path):
    main, sub, _ = pair
    cfg = parse_config({
        "cameras": [{"id": "sub", "url": str(main), "detect_url": str(sub), "realtime": False},
                    {"id": "plain", "url": str(sub), "realtime": False}],
        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool")},
        "http": {"port": 0},
        "anomaly": {"enabled": False},
        "detect": {"thresholds": {"fight": 0.0}},  # every window over threshold: a start alert per camera
    })
    pipe = Pipeline(cfg)
    try:
        pipe.run(duration=20)
    finally:
        pipe.close()
    client = redis.Redis.from_url(redis_server.url)
    starts = {a["camera"]: a for a in read_stream(client, "streamer:alerts", 100) if a["state"] == "start"}
    assert set(starts) == {"sub", "plain"}
    shapes = {}
    for cam, a in starts.items():
        jpg = client.get(a["evidence"]["keyframe"])
        shapes[cam] = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert shapes["sub"] == (MAIN[1], MAIN[0])  # the main stream's resolution
    assert shapes["plain"] == (96 * 320 // 160, 320)  # evidence.jpeg_width, as before


def test_live_rtsp_substream_takes_audio_and_keyframes_from_the_main_stream(pair, rtsp_server):
    main, sub, _ = pair
    main_srv, sub_srv = rtsp_server(main), rtsp_server(sub)
    reader = SourceReader(sub_srv.url, "c", probe_geometry(ModelSpec(), 0.5),
                          SourceOptions(main_url=main_srv.url, keyframe_width=1920, open_timeout=5, stall_timeout=5))
    windows = []
    for w in reader.windows():
        windows.append(w)
        if len(windows) == 8:
            break
    assert reader._main is not None and reader._main.live and reader._main.has_audio
    assert all(w.video_mask == 1.0 for w in windows)
    late = windows[3:]  # past the main stream's first keyframe (one a second)
    assert all(kf.shape == (MAIN[1], MAIN[0], 3) for kf in [w.keyframe for w in windows][3:])
    assert sum(w.audio_mask for w in late) >= len(late) - 1  # the main stream's audio, live
    assert reader._main._thread.is_alive() is False  # leaving the generator closed the main stream's reader


def test_a_live_main_stream_that_ends_is_reported_and_keyframes_come_from_the_detect_stream(pair, rtsp_server, caplog):
    """The main stream's RTSP session ends (here: the server plays it once) while the detect stream goes on:
    one warning, then the detect stream's own pictures as evidence, not the main stream's last keyframe aging."""
    main, _, sub_aac = pair
    main_srv, sub_srv = rtsp_server(main, loop=False), rtsp_server(sub_aac)
    reader = SourceReader(sub_srv.url, "c", probe_geometry(ModelSpec(), 0.5),
                          SourceOptions(main_url=main_srv.url, keyframe_width=1920, open_timeout=5, stall_timeout=5))
    windows = []
    with caplog.at_level("WARNING", logger="streamer.ingest.source"):
        for w in reader.windows():
            windows.append(w)
            if len(windows) == 20:  # 10 s of a 4 s main stream
                break
    shapes = [w.keyframe.shape[:2] for w in windows]
    assert (MAIN[1], MAIN[0]) in shapes[:8], shapes  # the main stream's while it played
    assert shapes[-4:] == [(SUB[1], SUB[0])] * 4, shapes  # then the detect stream's
    ended = [r for r in caplog.records if "the stream ended" in r.getMessage()]
    assert len(ended) == 1, [r.getMessage() for r in caplog.records]
