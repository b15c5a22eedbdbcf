"""Ingest on real media made with PyAV: windows, masks, alignment, determinism, clear errors."""

import socket
import threading
import time

import numpy as np
import pytest

from engines.spec import ModelSpec
from streamer.errors import SourceError
from streamer.ingest.clip import clip_windows
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import SourceReader, probe_geometry
from tests.conftest import free_port
from tests.media import write_video_with_pts

SPEC = ModelSpec(frames=8, height=64, width=64)


@pytest.mark.parametrize("name", ["h264_aac.mp4", "h264_opus.mkv"])
def test_file_gives_windows_with_both_modalities(media_dir, name):
    ws = clip_windows(media_dir / name, SPEC)
    assert len(ws) == 15  # 8 s, 1 s windows every 0.5 s
    assert [w.start for w in ws[:3]] == [0.0, 0.5, 1.0]
    for w in ws:
        assert w.video.shape == (8, 64, 64, 3) and w.video.dtype == np.uint8
        assert w.audio.shape == (16000,) and w.audio.dtype == np.float32
        assert w.video_mask == 1.0 and w.audio_mask == 1.0
        assert np.abs(w.audio).max() <= 1.0


def test_same_windows_on_every_run(media_dir):
    a = clip_windows(media_dir / "h264_aac.mp4", SPEC)
    b = clip_windows(media_dir / "h264_aac.mp4", SPEC)
    assert all(np.array_equal(x.video, y.video) and np.array_equal(x.audio, y.audio) for x, y in zip(a, b))


def test_video_only_has_audio_mask_zero(media_dir):
    ws = clip_windows(media_dir / "video_only.mp4", SPEC)
    assert ws and all(w.audio_mask == 0 and w.video_mask == 1 and not w.audio.any() for w in ws)


def test_audio_only_has_video_mask_zero(media_dir):
    ws = clip_windows(media_dir / "audio_only.mkv", SPEC)
    assert ws and all(w.video_mask == 0 and w.audio_mask == 1 and not w.video.any() for w in ws)


def test_flash_and_click_land_where_they_belong(tmp_path):
    from tests.media import make_clip

    path = tmp_path / "sync.mp4"
    make_clip(path, seconds=4.0, fps=25, video_codec="h264", audio_codec="aac", flash_at=[2.0], click_at=[2.0])
    ws = clip_windows(path, ModelSpec(frames=25, height=32, width=32))
    w = next(w for w in ws if w.start == 1.5)  # [1.5, 2.5): sample i at 1.5 + (i + 0.5) / 25
    bright = [i for i in range(25) if w.video[i].mean() > 240]
    assert bright, "the white frame must be sampled"
    assert abs(1.5 + (bright[0] + 0.5) / 25 - 2.0) <= 1 / 25 + 1e-6
    onset = int(np.argmax(np.abs(w.audio) > 0.5))
    assert abs(1.5 + onset / 16000 - 2.0) <= 0.02  # AAC priming is trimmed by the decoder


def test_missing_file_is_a_clear_error(tmp_path):
    reader = SourceReader(str(tmp_path / "nope.mp4"), "cam", probe_geometry(SPEC, 0.5))
    with pytest.raises(SourceError, match="no such file"):
        list(reader.windows())


def test_refused_rtsp_is_a_clear_error_with_redacted_password():
    port = free_port()  # nothing listens here
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/cam"
    reader = SourceReader(url, "cam", probe_geometry(SPEC, 0.5), SourceOptions(open_timeout=3, stall_timeout=3))
    t = time.monotonic()
    with pytest.raises(SourceError) as e:
        list(reader.windows())
    assert time.monotonic() - t < 5
    assert "hunter2" not in str(e.value) and "admin:***@127.0.0.1" in str(e.value)


def test_silent_rtsp_server_times_out_instead_of_hanging():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()  # accepts, never answers
    url = f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam"
    reader = SourceReader(url, "cam", probe_geometry(SPEC, 0.5), SourceOptions(open_timeout=2, stall_timeout=2))
    t = time.monotonic()
    with pytest.raises(SourceError):
        list(reader.windows())
    assert time.monotonic() - t < 2 + 3
    srv.close()


def test_rtsp_streams_give_windows(rtsp_server, media_dir):
    for name in ("h264_aac.mp4", "h264_opus.mkv"):
        server = rtsp_server(media_dir / name)
        reader = SourceReader(server.url, "cam", probe_geometry(SPEC, 0.5), SourceOptions(open_timeout=5, stall_timeout=5))
        ws = []
        for w in reader.windows():
            ws.append(w)
            if len(ws) == 4:
                break
        assert [w.start for w in ws] == [0.0, 0.5, 1.0, 1.5]
        assert all(w.video_mask == 1 and w.audio_mask == 1 for w in ws), name
        assert reader.stats.codecs["video"] == "h264"
        server.stop()


def test_timestamp_jump_continues_the_timeline(tmp_path):
    path = tmp_path / "jump.mkv"
    write_video_with_pts(path, list(range(50)) + list(range(25 * 3600, 25 * 3600 + 50)))  # 2 s, a 1 h jump, 2 s
    reader = SourceReader(str(path), "cam", probe_geometry(SPEC, 0.5))
    ws = list(reader.windows())
    assert reader.stats.discontinuities == 1
    assert len(ws) == 7 and ws[-1].end == 4.0  # 4 s of content, not an hour of empty windows


def test_b_frames_and_variable_frame_rate(tmp_path):
    path = tmp_path / "vfr.mkv"
    pts = [0, 1, 2, 4, 5, 9, 10, 11, 12, 20, 21, 22, 23, 24, 30, 31, 40, 45, 49, 50]  # irregular spacing at 1/25 s
    write_video_with_pts(path, pts)
    ws = clip_windows(path, ModelSpec(frames=8, height=8, width=8))
    assert [w.start for w in ws] == [0.0, 0.5, 1.0]  # 2.04 s of content (x264 codes B-frames by default)
    # frame i has value i: each sample takes the frame nearest its time, so values never decrease
    values = [int(v[0, 0, 0]) for v in ws[0].video]
    assert values == sorted(values) and len(set(values)) > 4


def test_unsampled_non_reference_frames_are_not_decoded(tmp_path):
    path = tmp_path / "bframes.mkv"
    write_video_with_pts(path, list(range(150)))  # 6 s at 25 fps; x264's default B-frames
    spec = ModelSpec(frames=8, height=8, width=8)
    runs = {}
    for skip in (False, True):
        reader = SourceReader(str(path), "cam", probe_geometry(spec, 0.5), SourceOptions(skip_unsampled=skip))
        runs[skip] = (list(reader.windows()), reader.stats)
    (plain, full), (skipped, part) = runs[False], runs[True]
    assert full.frames_read == part.frames_read == full.frames_decoded == 150
    assert part.frames_decoded < 130  # B-frames nobody samples were skipped
    assert len(plain) == len(skipped) == 11
    assert all(np.array_equal(a.video, b.video) for a, b in zip(plain, skipped))  # the same frames sampled


@pytest.mark.parametrize("name,video,audio,channels", [
    ("hevc_pcmu.mov", "hevc", "pcm_mulaw", 1),
    ("mjpeg_pcm.mkv", "mjpeg", "pcm_s16le", 2),
    ("h264_alaw.mov", "h264", "pcm_alaw", 1),
    ("h264_aac_stereo.mp4", "h264", "aac", 2),
])
def test_codecs_decode_to_aligned_windows(tmp_path, name, video, audio, channels):
    from tests.media import make_clip

    path = make_clip(tmp_path / name, seconds=3.0, video_codec=video, audio_codec=audio, channels=channels,
                     flash_at=[1.5], click_at=[1.5])
    reader = SourceReader(str(path), "cam", probe_geometry(ModelSpec(frames=25, height=32, width=32), 0.5))
    ws = list(reader.windows())
    assert len(ws) == 5 and all(w.video_mask == 1 and w.audio_mask == 1 for w in ws)
    w = next(w for w in ws if w.start == 1.0)  # the flash and the click at 1.5 s
    bright = [i for i in range(25) if w.video[i].mean() > 240]
    assert bright and abs(1.0 + (bright[0] + 0.5) / 25 - 1.5) <= 1 / 25 + 1e-6
    onset = int(np.argmax(np.abs(w.audio) > 0.4))
    assert abs(1.0 + onset / 16000 - 1.5) <= 0.02
    assert 0.8 <= np.abs(w.audio).max() <= 1.0  # a 0.9 click on both channels stays 0.9 in mono


@pytest.mark.parametrize("codec,ext", [("aac", "mp4"), ("libopus", "mkv")])
def test_av_sync_over_rtsp(tmp_path, rtsp_server, codec, ext):
    """Flashes and clicks 0.2 s apart (a known A/V offset) keep their offset through RTSP."""
    from tests.media import make_clip

    path = make_clip(tmp_path / f"sync.{ext}", seconds=8.0, audio_codec=codec, flash_at=[2.0, 5.0], click_at=[2.0, 5.0],
                     audio_offset=0.2)
    server = rtsp_server(path)
    reader = SourceReader(server.url, "cam", probe_geometry(ModelSpec(frames=25, height=32, width=32), 0.5),
                          SourceOptions(open_timeout=5, stall_timeout=5))
    flashes, clicks = [], []
    for w in reader.windows():
        if w.start in (4.5, 5.0) or w.start in (1.5, 2.0):
            for i in range(25):
                if w.video[i].mean() > 240:
                    flashes.append(w.start + (i + 0.5) / 25)
            loud = np.flatnonzero(np.abs(w.audio) > 0.4)
            if loud.size:
                clicks.append(w.start + loud[0] / 16000)
        if w.start >= 5.0:
            break
    assert flashes and clicks
    # the second event is past any RTCP start-up: both land where they belong relative to each other
    flash, click = max(flashes), max(clicks)
    print(f"flash {flash:.3f} s, click {click:.3f} s, offset {click - flash:+.3f} s (expected +0.200)")
    assert abs((click - flash) - 0.2) <= 1 / 25 + 0.02, (flashes, clicks)


def test_hwaccel_cuda_without_a_gpu_is_a_clear_error(media_dir):
    from streamer.errors import HwaccelError

    reader = SourceReader(str(media_dir / "video_only.mp4"), "cam", probe_geometry(SPEC, 0.5), SourceOptions(hwaccel="cuda"))
    with pytest.raises(HwaccelError, match="hwaccel 'cuda' is not available on this machine"):
        list(reader.windows())


def test_truncated_file_gives_the_windows_it_has(media_dir, tmp_path):
    data = (media_dir / "h264_opus.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    ws = clip_windows(cut, SPEC)
    assert 3 <= len(ws) < 15  # about half of the 8 s clip, no exception


def test_garbage_in_the_middle_is_skipped_and_counted(media_dir, tmp_path):
    data = bytearray((media_dir / "h264_aac.mp4").read_bytes())
    rng = np.random.default_rng(1)
    mid = len(data) // 2
    data[mid : mid + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(bytes(data))
    reader = SourceReader(str(bad), "cam", probe_geometry(SPEC, 0.5))
    t = time.monotonic()
    ws = list(reader.windows())
    assert time.monotonic() - t < 20
    assert len(ws) == 15  # the file's whole timeline still gives windows
    assert reader.stats.errors > 0  # the damaged packets were counted (streamer_decode_errors_total)
    assert reader.stats.frames_decoded > 150


def test_streamer_probe(media_dir):
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "streamer.cli", "probe", str(media_dir / "h264_opus.mkv"), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert [(s["type"], s["codec"]) for s in info["streams"]] == [("video", "h264"), ("audio", "opus")]
    assert info["streams"][0]["fps"] == 25.0 and info["streams"][1]["sample_rate"] == 48000
    assert info["decode"]["video_frames"] == 200 and info["decode"]["video_fps"] > 25
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "probe", "rtsp://a:pw@127.0.0.1:1/x", "--timeout", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "a:***@127.0.0.1" in r.stderr
