"""Microphones captured for real: PulseAudio's sine source through PortAudio (ALSA pulse plugin)."""

import numpy as np
import pytest

from engines.spec import ModelSpec
from streamer.errors import SourceError
from streamer.ingest.opening import SourceOptions
from streamer.ingest.source import MicReader, SourceReader, probe_geometry

GEO = probe_geometry(ModelSpec(frames=4, height=16, width=16), 0.5)


def peak_hz(pcm, rate=16000):
    spectrum = np.abs(np.fft.rfft(pcm))
    return np.argmax(spectrum) * rate / len(pcm)


def test_microphone_alone_gives_audio_windows(pulse_sine):
    reader = MicReader(pulse_sine, "mic", GEO, stall_timeout=5)
    ws = []
    for w in reader.windows():
        ws.append(w)
        if len(ws) == 3:
            break
    assert [w.start for w in ws] == [0.0, 0.5, 1.0]
    for w in ws:
        assert w.audio_mask == 1 and w.video_mask == 0
        assert abs(peak_hz(w.audio) - 440) <= 2
        assert 0.2 < np.abs(w.audio).max() <= 1.0


def test_camera_without_audio_paired_with_a_microphone(pulse_sine, media_dir):
    opts = SourceOptions(realtime=True, mic=pulse_sine, audio_offset=-0.1)
    reader = SourceReader(str(media_dir / "video_only.mp4"), "cam", GEO, opts)
    ws = list(reader.windows())
    assert len(ws) >= 5
    full = [w for w in ws[1:-2] if w.audio_mask == 1]  # the first and last windows may be partly covered
    assert full and all(w.video_mask == 1 for w in full)
    assert all(abs(peak_hz(w.audio) - 440) <= 2 for w in full)
    assert reader.stats.codecs["audio"] == "pcm (PortAudio)"


def test_unknown_microphone_is_a_clear_error(pulse_sine):
    reader = MicReader("mic:no-such-device", "mic", GEO)
    with pytest.raises(SourceError, match="input devices: .*pulse"):
        next(reader.windows())
