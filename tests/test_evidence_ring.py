"""The evidence ring: an ingest process writes each window's keyframe and audio, the main process reads
a window's by its start time, without the engine; a window no longer kept has none (counted)."""

import multiprocessing as mp
import time

import numpy as np
from prometheus_client import REGISTRY

from streamer.evidence_ring import EVIDENCE_KEEP, Evidence, EvidenceRing
from streamer.window import Window

SAMPLES = 1000


def window(i, key=True, video=True, audio=True):
    return Window(camera="c", start=i * 0.5, end=i * 0.5 + 1, video=np.zeros((0,), np.uint8),
                  audio=np.full(SAMPLES, i / 1000, np.float32), video_mask=float(video), audio_mask=float(audio),
                  arrival=time.monotonic(), keyframe=np.full((6, 8, 3), i % 256, np.uint8) if key and video else None)


def write(ring, windows):
    for w in windows:
        ring.put(w)
    ring.close()


BIG = 200_000  # samples: copies long enough that the writer comes round while a reader copies


def big_window(i):
    return Window(camera="c", start=i * 0.5, end=i * 0.5 + 1, video=np.zeros((0,), np.uint8),
                  audio=np.full(BIG, i, np.float32), video_mask=1.0, audio_mask=1.0, arrival=0.0,
                  keyframe=np.full((144, 256, 3), i % 256, np.uint8))


def write_forever(ring, stop):
    i = 0
    while not stop.is_set():
        ring.put(big_window(i))
        i += 1
    ring.close()


def test_the_main_process_reads_what_an_ingest_process_wrote():
    ctx = mp.get_context("spawn")
    ring = EvidenceRing(SAMPLES, keyframe_width=8, slots=6)
    windows = [window(0), window(1, key=False), window(2, audio=False), window(3, video=False), window(4), window(5),
               window(6), window(7)]
    p = ctx.Process(target=write, args=(ring, windows))  # a real second process, as the ingest
    p.start()
    p.join(10)
    try:
        assert p.exitcode == 0
        assert ring.get(0.0) is None and ring.get(0.5) is None  # their slots were reused: not kept
        key, audio = ring.get(1.0)
        assert key.shape == (6, 8, 3) and (key == 2).all() and audio is None  # a window without audio has none
        key, audio = ring.get(1.5)
        assert key is None and abs(audio - 0.003).max() < 1e-7  # a window without video: no keyframe
        key, audio = ring.get(3.5)
        assert (key == 7).all() and audio.shape == (SAMPLES,)
        assert ring.get(4.0) is None  # never written
    finally:
        ring.close(unlink=True)


def test_a_reader_never_gets_a_slot_half_written():
    """The reader copies the oldest kept window, the slot the writer takes next: a copy the writer came
    through is reported as not kept, never returned mixed."""
    ctx = mp.get_context("spawn")
    ring = EvidenceRing(BIG, keyframe_width=256, slots=3)
    stop = ctx.Event()
    p = ctx.Process(target=write_forever, args=(ring, stop))
    p.start()
    whole = gone = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() < t0 + 20:  # 2 s at least, and until both outcomes were seen (a loaded machine reads fewer)
            if time.monotonic() > t0 + 2 and whole > 10 and gone > 0:
                break
            cursor, fields = ring._header()
            oldest = int(cursor[0]) - ring.slots
            del cursor, fields
            if oldest < 0:
                continue
            got = ring.get(oldest * 0.5)
            if got is None:
                gone += 1
                continue
            key, audio = got  # that window's, whole
            assert (key == oldest % 256).all() and (audio == oldest).all(), oldest
            whole += 1
        assert whole > 10 and gone > 0  # both happened: the race was run
    finally:
        stop.set()
        p.join(5)
        ring.close(unlink=True)


def test_evidence_no_longer_kept_is_none_and_counted():
    evidence = Evidence(SAMPLES, window_queue=4)
    ring = evidence.add("late", keyframe_width=8)
    try:
        assert ring.slots == 4 + EVIDENCE_KEEP
        for i in range(ring.slots + 1):
            ring.put(window(i))
        before = REGISTRY.get_sample_value("streamer_evidence_missed_total", {"camera": "late"}) or 0.0
        assert evidence.read("late", 0.0) == (None, None)  # written over: its alert goes without
        assert REGISTRY.get_sample_value("streamer_evidence_missed_total", {"camera": "late"}) == before + 1
        key, audio = evidence.read("late", 0.5)
        assert (key == 1).all() and audio is not None
    finally:
        evidence.close()
    assert evidence.rings == {}


def test_a_portrait_cameras_keyframes_fit_and_are_kept(tmp_path):
    """A portrait (corridor) camera: its keyframe's longer side is the configured size, so it fits the
    ring's room (it was made `width` wide, too tall for the room, and dropped: start alerts without evidence)."""
    from engines.spec import ModelSpec
    from streamer.ingest.opening import SourceOptions
    from streamer.ingest.source import SourceReader, probe_geometry
    from tests.media import make_clip

    clip = make_clip(tmp_path / "corridor.mp4", seconds=2, size=(180, 320), audio_codec=None)
    reader = SourceReader(str(clip), "corridor", probe_geometry(ModelSpec(), 0.5),
                          SourceOptions(keyframe_width=128, realtime=False))
    w = next(iter(reader.windows()))
    assert w.keyframe.shape == (128, 72, 3)  # height is the longer side
    ring = EvidenceRing(w.audio.size, keyframe_width=128, slots=2)
    try:
        ring.put(w)
        key, _audio = ring.get(w.start)
        assert key is not None and (key == w.keyframe).all()
    finally:
        ring.close(unlink=True)
