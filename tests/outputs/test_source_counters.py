"""A source reader's counts (SourceStats) exported as the camera's Prometheus counters, from a real file."""

from engines.spec import ModelSpec
from streamer.ingest.source import SourceReader, probe_geometry
from streamer.outputs import metrics as m
from tests.media import write_video_with_pts


def values(camera):
    return {name: counter.labels(camera)._value.get() for name, counter in m.SOURCE_COUNTERS.items()}


def test_a_readers_counts_become_the_cameras_counters_once(tmp_path, media_dir):
    geo = probe_geometry(ModelSpec(frames=4, height=32, width=32), 0.5)
    jump = write_video_with_pts(tmp_path / "jump.mkv", list(range(50)) + list(range(25 * 3600, 25 * 3600 + 50)))
    for camera, path in (("counted-jump", jump), ("counted-av", media_dir / "h264_aac.mp4")):
        before, seen = values(camera), {}
        reader = SourceReader(str(path), camera, geo)
        for _ in reader.windows():
            m.count_source(camera, reader.stats, seen)
        m.count_source(camera, reader.stats, seen)
        m.count_source(camera, reader.stats, seen)  # nothing new: nothing added
        added = {k: v - before[k] for k, v in values(camera).items()}
        assert added == {name: getattr(reader.stats, name) for name in m.SOURCE_COUNTERS}
    assert added["audio_frames_decoded"] > 0 and added["frames_decoded"] > 0  # the audio and video file
    assert values("counted-jump")["discontinuities"] == 1  # the jump file's 1 h jump
