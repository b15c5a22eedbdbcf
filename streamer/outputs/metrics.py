"""Prometheus metrics, recorded in the process that measures them; served at /metrics by the HTTP
server (streamer/web/server.py).

Processes share them through prometheus-client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR must be
set before prometheus_client is first imported (the CLI does it first thing); children inherit it.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.mmap_dict import MmapedDict

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)

FRAMES_DECODED = Counter("streamer_frames_decoded_total", "Video frames decoded.", ["camera"])
WINDOWS = Counter("streamer_windows_total", "Windows produced by ingest.", ["camera"])
WINDOWS_DROPPED = Counter("streamer_windows_dropped_total", "Windows dropped, by reason.", ["camera", "reason"])
DECODE_ERRORS = Counter("streamer_decode_errors_total", "Packets the decoder rejected.", ["camera"])
AUDIO_FRAMES_DECODED = Counter("streamer_audio_frames_decoded_total", "Audio frames decoded.", ["camera"])
DISCONTINUITIES = Counter("streamer_timestamp_discontinuities_total",
                          "Timestamp jumps in a source that its timeline rebased over.", ["camera"])
MIC_OVERFLOWS = Counter("streamer_mic_overflows_total",
                        "Microphone audio blocks lost: PortAudio overflowed, or its queue was full.", ["camera"])
PROCESS_RESTARTS = Counter("streamer_process_restarts_total", "Ingest processes restarted after dying.", ["camera"])
RECONNECTS = Counter("streamer_reconnects_total", "Times a source was reopened.", ["camera"])
SOURCE_UP = Gauge("streamer_source_up", "1 while the source delivers data.", ["camera"], multiprocess_mode="livemax")
STAGE_LATENCY = Histogram("streamer_stage_latency_seconds", "Latency of one pipeline stage.", ["stage"], buckets=LATENCY_BUCKETS)
E2E_LATENCY = Histogram(
    "streamer_end_to_end_latency_seconds",
    "From the arrival of a window's last input to its result being published.",
    ["camera"],
    buckets=LATENCY_BUCKETS,
)
POSE_FRAMES = Counter("streamer_pose_frames_total", "Frames the engine's pose model saw: computed, or reused from an "
                      "earlier window (consecutive windows share half their pose frames).", ["result"])
BATCH_SIZE = Histogram("streamer_engine_batch_size", "Windows per engine call.", buckets=(1, 2, 4, 8, 16, 32, 64))
ALERTS = Counter("streamer_alerts_total", "Alerts published, by event.", ["camera", "event"])
ALERTS_DROPPED = Counter("streamer_alerts_dropped_total", "Alerts lost, by reason (only a full spool drops).", ["camera", "reason"])
EVIDENCE_MISSED = Counter("streamer_evidence_missed_total", "Start alerts sent without evidence: their window's keyframe and "
                          "audio were no longer kept (the main process too far behind).", ["camera"])
SPOOLED = Gauge("streamer_spool_alerts", "Alerts waiting in the on-disk spool.", multiprocess_mode="livemax")
ENGINE_RESTARTS = Counter("streamer_engine_restarts_total", "Engine process restarted after dying.")
OBJECTS_MISSED = Counter("streamer_objects_missed_total", "Windows not scored for anomaly: their moving objects had not "
                         "arrived from the ingest process when the engine's result did.", ["camera"])
NORMALITY_LEARNING = Gauge("streamer_normality_learning_progress", "Learning period of the camera's normality model: 0..1, 1 = learned.",
                           ["camera"], multiprocess_mode="livemax")
LEVEL_BUCKETS = (-90.0, -80.0, -70.0, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, -6.0, -3.0, 0.0)
SOUND_LEVEL = Gauge("streamer_sound_level_dbfs", "The last window's audio level in dBFS (measure rms or peak; NaN when it had no audio).",
                    ["camera", "measure"], multiprocess_mode="livemostrecent")
SOUND_LEVEL_RMS = Histogram("streamer_sound_level_rms_dbfs", "Windows by audio RMS level in dBFS (windows with audio only).",
                            ["camera"], buckets=LEVEL_BUCKETS)
ENGINE_INFO = Gauge("streamer_engine_info", "The engine in use (value 1).", ["backend", "precision", "model"], multiprocess_mode="livemax")


# a source reader's counts (streamer/ingest/opening.py SourceStats) and the counters they feed
SOURCE_COUNTERS = {"frames_decoded": FRAMES_DECODED, "audio_frames_decoded": AUDIO_FRAMES_DECODED, "errors": DECODE_ERRORS,
                   "discontinuities": DISCONTINUITIES, "mic_overflows": MIC_OVERFLOWS}

READY = threading.Event()  # set once the pipeline has started (model loaded, Redis client made): /readyz can answer 200
FOLDED = ("counter", "histogram")  # the types the collector sums over processes: a dead one's values can join one file
_FILES = threading.Lock()  # a collection never reads a dead process's values while they move into the archive


def registry() -> Any:
    """Every process's metrics (the multiprocess registry when the children write theirs), else this one's."""
    if not os.environ.get(MULTIPROC_ENV):
        from prometheus_client import REGISTRY

        return REGISTRY
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    return reg


def collect(fn: Any) -> Any:
    """`fn(registry())`, never while a dead process's files are being folded."""
    with _FILES:
        return fn(registry())


def collect_samples() -> list:
    """Every sample of every process, as the endpoint would serve them."""
    return collect(lambda reg: [s for metric in reg.collect() for s in metric.samples])


def count_source(camera: str, stats: Any, seen: dict[str, int]) -> None:
    """Add what a source reader's stats counted since `seen` (updated in place) to the camera's counters."""
    for name, counter in SOURCE_COUNTERS.items():
        n = getattr(stats, name)
        if n > seen.get(name, 0):
            counter.labels(camera).inc(n - seen.get(name, 0))
            seen[name] = n


def process_exited(pid: int) -> None:
    """A child has ended: its live gauges go, and its counters and histograms are added into one archive
    file per type, so that a scrape reads the live processes' files plus two, however many have died
    (each restart used to leave its files for every later scrape to parse)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    with _FILES:
        multiprocess.mark_process_dead(pid, path)
        for typ in FOLDED:
            fold(os.path.join(path, f"{typ}_{pid}.db"), os.path.join(path, f"{typ}_archive.db"))


def fold(src: str, dst: str) -> None:
    """Add every value of the metrics file `src` into `dst` (same keys: metric, sample, labels), then remove `src`."""
    if not os.path.exists(src):
        return
    archive = MmapedDict(dst)
    try:
        for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(src):
            archive.write_value(key, archive.read_value(key)[0] + value, timestamp)
    finally:
        archive.close()
    os.remove(src)


def cleanup() -> None:
    path = os.environ.get(MULTIPROC_ENV, "")
    if path and os.path.basename(path).startswith("streamer-metrics-"):
        shutil.rmtree(path, ignore_errors=True)
