"""One redaction function for logs, errors, metrics and alerts: URL userinfo and credential-looking
query parameters are masked."""

import logging
import multiprocessing as mp
import time

import pytest

from engines.spec import ModelSpec
from streamer.config import CameraConfig
from streamer.errors import ConfigError, RedactingFilter, SourceError, StreamerError, redact, redact_text
from streamer.ingest.source import probe_geometry
from streamer.ingest.supervisor import ingest_main
from streamer.ring import RingHandle, WindowRing


@pytest.mark.parametrize("url, shown", [
    ("rtsp://admin:p@ss@10.0.0.1:554/s", "rtsp://admin:***@10.0.0.1:554/s"),
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("rtsp://host/live?user=admin&password=hunter2&channel=1", "rtsp://host/live?user=***&password=***&channel=1"),
    ("rtsp://h/s?pwd=a&pass=b&passwd=c&token=d&key=e&auth=f&username=g&secret=h",
     "rtsp://h/s?pwd=***&pass=***&passwd=***&token=***&key=***&auth=***&username=***&secret=***"),
    ("http://h/x?api_key=abc&x-auth-token=z&channel=2", "http://h/x?api_key=***&x-auth-token=***&channel=2"),
    ("rtsp://h/cam;user=a;pwd=b", "rtsp://h/cam;user=***;pwd=***"),
    ("rtsp://10.0.0.5/stream1?channel=1&subtype=0", "rtsp://10.0.0.5/stream1?channel=1&subtype=0"),
    ("/srv/clips/yard.mp4", "/srv/clips/yard.mp4"),
    ("mic:1", "mic:1"),
])
def test_redact(url, shown):
    assert redact(url) == shown


def test_redact_text_finds_every_url_and_bare_query_strings():
    text = ("open rtsp://u:pw@h/x failed (rtsp://host/live?user=admin&password=x), "
            "[rtsp @ 0x55] method DESCRIBE failed: GET /live?auth=abc&ch=1 HTTP/1.0")
    assert redact_text(text) == ("open rtsp://u:***@h/x failed (rtsp://host/live?user=***&password=***), "
                                 "[rtsp @ 0x55] method DESCRIBE failed: GET /live?auth=***&ch=1 HTTP/1.0")


def test_log_records_are_redacted_with_their_arguments_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    h = Keep()
    h.addFilter(RedactingFilter())
    log = logging.getLogger("test.redaction")
    log.addHandler(h)
    try:
        log.warning("camera %s: %s", "lobby", "rtsp://cam/live?user=admin&password=hunter2")
        try:
            raise SourceError("source rtsp://cam/live?token=s3cr3t: read failed")
        except SourceError:
            log.exception("failed")
    finally:
        log.removeHandler(h)
    text = "\n".join(records)
    assert "hunter2" not in text and "s3cr3t" not in text and "admin" not in text
    assert "password=***" in text and "token=***" in text


def test_one_hierarchy_each_saying_if_it_is_recoverable():
    from engines.errors import BackendUnavailable, EngineError, InferenceError
    from streamer.engine.process import EngineDied, EngineStartError
    from streamer.errors import SourceTimeout

    for cls, builtin, recoverable in [(ConfigError, ValueError, False), (SourceError, OSError, True),
                                      (SourceTimeout, TimeoutError, True), (EngineStartError, RuntimeError, False),
                                      (EngineDied, RuntimeError, True), (EngineError, RuntimeError, False),
                                      (BackendUnavailable, ImportError, False), (InferenceError, RuntimeError, True)]:
        assert issubclass(cls, StreamerError) and issubclass(cls, builtin), cls
        assert cls.recoverable is recoverable, cls


def test_reconnect_warnings_of_a_live_ingest_process_show_no_credentials(capfd, free_port):
    """A real ingest process reconnecting to a refused RTSP URL with credentials in userinfo and query."""
    geo = probe_geometry(ModelSpec(frames=4, height=32, width=32), 0.5)
    ctx = mp.get_context("spawn")
    ring = WindowRing(ctx, geo, 2)
    stop, updates = ctx.Event(), ctx.Queue()  # (kept referenced until the child has started)
    url = f"rtsp://viewer:Hunter2@127.0.0.1:{free_port()}/live?user=admin&password=Sw0rdfish&channel=1"
    cam = CameraConfig(id="cam", url=url, open_timeout=2, stall_timeout=2)
    proc = ctx.Process(target=ingest_main, args=(cam, geo, RingHandle(ring, updates), stop))
    proc.start()
    try:
        time.sleep(4.0)  # a few reconnect warnings
    finally:
        stop.set()
        proc.join(10)
        ring.close(unlink=True)
    err = capfd.readouterr().err
    assert "reconnecting" in err
    assert "Hunter2" not in err and "Sw0rdfish" not in err and "user=admin" not in err
    assert "password=***" in err
