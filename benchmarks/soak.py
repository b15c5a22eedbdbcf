"""Fault soak: live RTSP cameras through `streamer run` while the parts around it fail on a schedule.

    python -m benchmarks.soak --cameras 8 --minutes 15 --faults --json FILE

Real parts only, all on 127.0.0.1: GStreamer's RTSP server (tests/rtsp_server.py under the system
Python) serves the bundled demo clip (a quiet street, then a fight: the default model opens and
closes a `fight` event every 13 s loop) at real-time pace on one mount per camera; Debian's
redis-server runs on its own port and directory with an append-only file (so a restart keeps the
stream); `streamer run` is a subprocess on a generated config with `redis.journal` on, so every
alert the sink accepted is listed. So that alerts come regularly whatever the model (it is retrained
from time to time), one class gets a threshold at its 70th percentile over the clip's windows, the
class whose score varies most on the clip (scored once before the run; `--threshold CLASS=V` sets
one instead, `--model-thresholds` keeps the model's own).

With `--faults`, after a warm-up, faults follow one another, each once its predecessor has recovered
(plus a gap), repeated while the run allows:

| kind | what | fault end |
|---|---|---|
| `rtsp_restart` | SIGTERM to the RTSP server, started again on its port | the new server is listening |
| `camera_stall` | SIGSTOP to one camera's ingest process for `--stall-s` s, then SIGCONT | SIGCONT |
| `redis_restart` | SIGTERM to redis-server (it writes its AOF), started again | it answers PING |
| `redis_freeze` | SIGSTOP to redis-server for `--freeze-s` s, then SIGCONT | SIGCONT |
| `ingest_kill` | SIGKILL to one camera's ingest process | the kill |
| `engine_kill` | SIGKILL to the engine process | the kill |

`recovery_s`: from the fault's end to the first sample (every 0.2 s, from streamer's /metrics) where
every affected camera has both produced a new window (`streamer_windows_total`, counted by ingest)
and had a window through detection (`streamer_end_to_end_latency_seconds_count`, main process).
Redis faults stop no window (detection never waits on Redis), so they also get
`delivery_recovery_s`: fault end to the spool (`streamer_spool_alerts`) being empty again.

After the run streamer gets SIGINT (its stop time is recorded), then the journal is compared with
the alert stream read back by id: `alerts_lost` (accepted, not in the stream), `alerts_duplicated`
(stream entries beyond the first of their id). `rss_growth_pct`: summed RSS of streamer's process
tree (main, engine, ingest, resource tracker; from /proc every 2 s), linear fit after the warm-up,
growth over the fitted span (also per hour, extrapolated, and the same for PSS). `p99_ms_first` /
`p99_ms_last`: p99 of the alerts' `latency_ms.end_to_end` in the first and last 2 minutes (10 from a
30-minute run; by the alert's time) of the run, or, with `--slot-s` (faults on a clock, in whole rounds),
of the fault period, so that both windows hold the same faults at the same offsets and a difference is
drift, not the schedule (`latency_span_s`; `p99_ms_*_run` keep the run's own first and last windows); `p99_ms_windows_*` the same from the end-to-end histogram of every window (bucket
interpolation, as Prometheus' histogram_quantile). `timeline`: per minute, window e2e p50/p99, windows
through detection, CPU % of one core by part (main, engine, ingest, rtsp_server, redis) and the
machine's, `outside_cpu_pct` (the machine less those: anything else running), the median time to fetch
/metrics and the files in the metrics directory at the minute's end. `--kinds` injects only some faults. The soak stops by itself and stops every process
it started (SIGTERM/SIGINT to it too); its working directory is removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.e2e import camera_clip
from streamer.net import free_port  # on 127.0.0.1, the HOST of everything here
from streamer.outputs.alerts import redis_ping
from streamer.procs import popen_preexec  # children get SIGKILL when the soak dies, however it dies

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "streamer" / "assets" / "demo.mp4"
RTSP_SCRIPT = ROOT / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # has GObject introspection (python3-gi) for GStreamer's RTSP server
HOST = "127.0.0.1"
SAMPLE_S = 0.2
LEFTOVER_GRACE_S = 2.0  # after streamer's exit, for children still being torn down
RSS_EVERY_S = 2.0
RECOVERY_TIMEOUT_S = 60.0
FAULTS = ("rtsp_restart", "camera_stall", "redis_restart", "redis_freeze", "ingest_kill", "engine_kill")


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def _signal(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except OSError:
            pass


def _end(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGCONT (a stopped process would not act), SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    _signal(proc, signal.SIGCONT)
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Redis:
    """redis-server on its own port and directory, AOF on (a restart keeps the stream)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", str(self.dir / "redis.log")],
            preexec_fn=popen_preexec, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if redis_ping(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {HOST}:{self.port} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        _end(self.proc)


class Rtsp:
    """tests/rtsp_server.py serving camera i's clip at rtsp://127.0.0.1:PORT/<camera i>, looped."""

    def __init__(self, clips: list[Path], cameras: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.args = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--host", HOST, "--port", str(self.port), "--loop"]
        for c, clip in zip(cameras, clips):
            self.args += ["--mount", f"/{c}={clip}"]
        self.log = workdir / "rtsp_server.log"
        self.proc: subprocess.Popen | None = None

    def url(self, camera: str) -> str:
        return f"rtsp://{HOST}:{self.port}/{camera}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.args, preexec_fn=popen_preexec, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=f)
        assert self.proc.stdout is not None
        buf, deadline = b"", time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf and time.monotonic() < deadline:
                if sel.select(max(0.0, deadline - time.monotonic())):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
        if buf.decode(errors="replace").strip() != f"READY {self.port}":
            raise RuntimeError(f"RTSP server did not start on port {self.port}: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        _end(self.proc, timeout=5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()


# ---- /proc ---------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the name (field 3 on, so index 0 is the state); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]))


def start_time(pid: int) -> int | None:
    """Start time of a live process (clock ticks since boot; None when gone or a zombie): with the pid, an identity
    that survives pid reuse."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st and st[0] != "Z":
                kids.setdefault(st[1], []).append(int(name))
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks; None when gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def group_of(name: str) -> str:
    """Which part a child of streamer is, from its name: engine, ingest (all cameras) or other (the resource
    tracker)."""
    if name == "streamer:engine":
        return "engine"
    return "ingest" if name.startswith("ingest:") else "other"


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB; (0, 0) when gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, pss


# ---- metrics ---------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^(streamer_[a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN|\+Inf)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(port: int) -> dict[str, Any] | None:
    t = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, Any] = {"windows": {}, "detected": {}, "buckets": {}, "spool": 0.0, "scrape_s": time.monotonic() - t}
    for line in text.splitlines():
        mt = _SAMPLE.match(line)
        if not mt:
            continue
        name, labels, value = mt.group(1), dict(_LABEL.findall(mt.group(2) or "")), float(mt.group(3))
        if name == "streamer_windows_total":
            out["windows"][labels["camera"]] = out["windows"].get(labels["camera"], 0.0) + value
        elif name == "streamer_end_to_end_latency_seconds_count":
            out["detected"][labels["camera"]] = out["detected"].get(labels["camera"], 0.0) + value
        elif name == "streamer_end_to_end_latency_seconds_bucket":
            le = float(labels["le"])
            out["buckets"][le] = out["buckets"].get(le, 0.0) + value
        elif name == "streamer_spool_alerts":
            out["spool"] = max(out["spool"], value)
    return out


def histogram_p99(a: dict[float, float], b: dict[float, float], q: float = 0.99) -> float | None:
    """q-quantile (ms) of the observations between two cumulative bucket snapshots, interpolated in the bucket."""
    les = sorted(b)
    counts = [b[le] - a.get(le, 0.0) for le in les]
    if not les or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in zip(les, counts):
        if c >= rank:
            if le == float("inf"):
                return round(prev_le * 1000, 1)  # beyond the last finite bucket: its bound, as Prometheus does
            return round((prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)) * 1000, 1)
        prev_le, prev_c = le, c
    return None


# ---- regular alerts ---------------------------------------------------------------------------------

def model_version() -> str:
    """The version of the model `streamer run` loads (the bundled default: the soak's config names none)."""
    from engines import spec as espec

    return espec.load_spec(espec.DEFAULT_MODEL).version


def regular_threshold(clip: Path, quantile: float = 0.7) -> tuple[str, float]:
    """A class and threshold that make the default model open and close events on every loop of the
    clip, whatever the model's own thresholds are: the class whose score varies most over the clip's
    windows (interquartile range), at its `quantile` over them. Scored here, once, on ONNX Runtime CPU."""
    from engines import spec as espec
    from engines.feed import sigmoid, windows_feed
    from engines.runtime.select import open_runtime
    from streamer.ingest.clip import clip_windows

    spec = espec.load_spec(espec.DEFAULT_MODEL)
    windows = clip_windows(clip, spec)
    rt = open_runtime(espec.DEFAULT_MODEL, backend="onnxruntime-cpu", threads=1, max_batch=8)
    try:
        logits = [rt.infer(windows_feed(windows[i:i + 8]))[espec.OUTPUT_LOGITS] for i in range(0, len(windows), 8)]
    finally:
        rt.close()
    scores = sigmoid(np.concatenate(logits))
    iqr = np.percentile(scores, 75, axis=0) - np.percentile(scores, 25, axis=0)
    k = int(np.argmax(iqr))
    return spec.classes[k], round(float(np.quantile(scores[:, k], quantile)), 4)


# ---- the soak -------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="streamer-soak-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cameras = [f"cam{i:02d}" for i in range(args.cameras)]
        self.redis = Redis(self.workdir)
        # the demo clip: each camera its own copy (benchmarks.e2e.camera_clip), so no two show the same pixels
        clips = [camera_clip(i) if args.clip == str(CLIP) else Path(args.clip) for i in range(args.cameras)]
        self.rtsp = Rtsp(clips, self.cameras, self.workdir)
        self.metrics_port = free_port()
        self.journal = self.workdir / "journal.jsonl"
        self.streamer: subprocess.Popen | None = None
        self.samples: list[tuple[float, dict[str, Any]]] = []  # (monotonic, scrape)
        self.memory: list[tuple[float, int, int, int]] = []  # (monotonic, rss kB, pss kB, processes)
        self.cpu: list[tuple[float, dict[int, tuple[str, int]], tuple[int, int]]] = []  # (monotonic, pid -> (group, ticks), machine)
        self.seen_pids: dict[int, int | None] = {}  # pid -> start time
        self.seen_names: dict[int, str] = {}  # pid -> its name when first seen
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.t0 = 0.0  # monotonic: every camera has had a window
        self.t0_wall = 0.0
        self.thresholds: dict[str, Any] = {}
        self.fault_span: tuple[float, float] | None = None  # with --slot-s: from the first fault to the end of the last round (s from t0)

    # -- set-up
    def config(self) -> dict[str, Any]:
        thresholds = dict(t.split("=", 1) for t in self.args.threshold)
        if not thresholds and not self.args.model_thresholds:
            cls, thr = regular_threshold(Path(self.args.clip))
            thresholds = {cls: thr}
            log(f"detect.thresholds {thresholds} (regular alerts from this model; --model-thresholds to keep its own)")
        self.thresholds = thresholds
        return {
            "cameras": [{"id": c, "url": self.rtsp.url(c), "stall_timeout": self.args.stall_timeout} for c in self.cameras],
            "redis": {"url": self.redis.url, "spool_dir": str(self.workdir / "spool"), "journal": str(self.journal),
                      "stats_interval": 5},
            "http": {"host": HOST, "port": self.metrics_port},
            "anomaly": {"enabled": False},  # a learning period would write normality models under ~/.local
            "detect": {"thresholds": {k: float(v) for k, v in thresholds.items()}},
        }

    def start(self) -> None:
        self.redis.start()
        self.rtsp.start()
        cfg = self.workdir / "soak.yaml"
        cfg.write_text(json.dumps(self.config(), indent=1))
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "metrics")}
        env.pop("STREAMER_REDIS_URL", None)
        (self.workdir / "metrics").mkdir(exist_ok=True)
        total = self.args.minutes * 60 + 120  # a backstop: the soak stops it with SIGINT before
        with open(self.workdir / "streamer.log", "ab") as f:
            self.streamer = subprocess.Popen(
                [sys.executable, "-m", "streamer.cli", "run", str(cfg), "--duration", str(total), "--summary-every", "10"],
                cwd=ROOT, env=env, preexec_fn=popen_preexec, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
        threading.Thread(target=self._sampler, name="soak:sampler", daemon=True).start()
        deadline = time.monotonic() + self.args.ready_timeout
        while time.monotonic() < deadline:
            if self.streamer.poll() is not None:
                raise RuntimeError(f"streamer exited ({self.streamer.returncode}): {self.log_tail()}")
            last = self.last()
            if last and all(last["detected"].get(c, 0) > 0 for c in self.cameras):
                self.t0, self.t0_wall = time.monotonic(), time.time()
                return
            time.sleep(0.2)
        raise RuntimeError(f"not every camera had a window within {self.args.ready_timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.workdir / "streamer.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- sampling
    def _sampler(self) -> None:
        next_mem = 0.0
        while not self._done.is_set():
            t = time.monotonic()
            s = scrape(self.metrics_port)
            if s is not None:
                s["files"] = len(os.listdir(self.workdir / "metrics"))
                with self._lock:
                    self.samples.append((time.monotonic(), s))
            if t >= next_mem and self.streamer is not None and self.streamer.poll() is None:
                pids = [self.streamer.pid] + descendants(self.streamer.pid)
                for pid in pids:
                    if pid not in self.seen_pids:
                        self.seen_pids[pid], self.seen_names[pid] = start_time(pid), comm(pid)
                mem = [memory_kb(p) for p in pids]
                self.memory.append((t, sum(r for r, _ in mem), sum(p for _, p in mem), len(pids)))
                self.cpu.append((t, self.cpu_by_pid(pids), machine_ticks()))
                next_mem = t + RSS_EVERY_S
            self._done.wait(max(0.0, SAMPLE_S - (time.monotonic() - t)))

    def cpu_by_pid(self, streamer_pids: list[int]) -> dict[int, tuple[str, int]]:
        """CPU ticks of streamer's processes (grouped by name) and of the RTSP server and Redis around it."""
        groups = [(p, group_of(comm(p)) if p != streamer_pids[0] else "main") for p in streamer_pids]
        for proc, name in ((self.rtsp.proc, "rtsp_server"), (self.redis.proc, "redis")):
            if proc is not None and proc.poll() is None:
                groups.append((proc.pid, name))
        out = {}
        for pid, g in groups:
            ticks = cpu_ticks(pid)
            if ticks is not None:
                out[pid] = (g, ticks)
        return out

    def timeline(self, step_s: float = 60.0) -> list[dict[str, Any]]:
        """Per step of the run: e2e p50/p99 of every window (histogram), windows, and CPU % of one core by
        part (a process counts while alive at both ends of the step) and of the machine (all cores = 100 x cpus)."""
        hz = os.sysconf("SC_CLK_TCK")
        out = []
        t = self.t0
        while t + step_s <= (self.cpu[-1][0] if self.cpu else t):
            a, b = self.sample_at(t), self.sample_at(t + step_s)
            ca = min(self.cpu, key=lambda c: abs(c[0] - t))
            cb = min(self.cpu, key=lambda c: abs(c[0] - t - step_s))
            dt = max(cb[0] - ca[0], 1e-6)
            row: dict[str, Any] = {"t_s": round(t - self.t0)}
            if a and b:
                row["p50_ms"] = histogram_p99(a["buckets"], b["buckets"], q=0.5)
                row["p99_ms"] = histogram_p99(a["buckets"], b["buckets"])
                row["windows"] = int(sum(b["detected"].values()) - sum(a["detected"].values()))
                row["scrape_ms_p50"] = self.scrape_ms(t, t + step_s)
                row["metrics_files"] = b.get("files")
            cpu: dict[str, float] = {}
            for pid, (g, ticks) in cb[1].items():
                if pid in ca[1]:
                    cpu[g] = cpu.get(g, 0.0) + (ticks - ca[1][pid][1]) / hz / dt * 100
            row["cpu_pct"] = {g: round(v, 1) for g, v in sorted(cpu.items())}
            busy = (cb[2][0] - ca[2][0]) / hz / dt * 100
            row["machine_cpu_pct"] = round(busy, 1)
            row["outside_cpu_pct"] = round(busy - sum(cpu.values()), 1)  # everything not streamer, RTSP server or Redis
            out.append(row)
            t += step_s
        return out

    def scrape_ms(self, lo: float, hi: float) -> float | None:
        """Median time to fetch /metrics between two instants (it grows with the files the collector reads)."""
        with self._lock:
            took = [s["scrape_s"] for ts, s in self.samples if lo <= ts < hi]
        return round(float(np.median(took)) * 1000, 1) if took else None

    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return self.samples[-1][1] if self.samples else None

    def sample_at(self, t: float) -> dict[str, Any] | None:
        """The last sample taken at or before monotonic time t (the first one if none)."""
        with self._lock:
            best = self.samples[0][1] if self.samples else None
            for ts, s in self.samples:
                if ts > t:
                    break
                best = s
            return best

    # -- processes
    def pid_of(self, name: str) -> int:
        assert self.streamer is not None
        for p in descendants(self.streamer.pid):
            if comm(p) == name:
                return p
        raise RuntimeError(f"no process named {name!r} under streamer ({self.streamer.pid})")

    # -- faults
    def wait_recovered(self, t_end: float, cams: list[str]) -> float | None:
        base = scrape(self.metrics_port) or self.last() or {"windows": {}, "detected": {}}
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                after = [(ts, s) for ts, s in self.samples if ts >= t_end]
            for ts, s in after:
                if all(s["windows"].get(c, 0) > base["windows"].get(c, 0) and s["detected"].get(c, 0) > base["detected"].get(c, 0)
                       for c in cams):
                    return round(max(ts - t_end, 0.0), 2)
            time.sleep(SAMPLE_S)
        return None

    def wait_spool_empty(self, t_end: float, timeout: float = RECOVERY_TIMEOUT_S) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                after = [(ts, s) for ts, s in self.samples if ts >= t_end]
            for ts, s in after:
                if s["spool"] == 0:
                    return round(ts - t_end, 2)
            time.sleep(SAMPLE_S)
        return None

    def fault(self, kind: str, n: int) -> dict[str, Any]:
        cam = self.cameras[n % len(self.cameras)]
        cams = self.cameras
        t_start = time.monotonic()
        rec: dict[str, Any] = {"kind": kind, "at_s": round(t_start - self.t0, 2)}
        if kind == "rtsp_restart":
            self.rtsp.stop()
            self.rtsp.start()
        elif kind == "camera_stall":
            pid = self.pid_of(f"ingest:{cam}")
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(self.args.stall_s)
            finally:
                os.kill(pid, signal.SIGCONT)
            cams = [cam]
        elif kind == "redis_restart":
            self.redis.stop()
            self.redis.start()
        elif kind == "redis_freeze":
            _signal(self.redis.proc, signal.SIGSTOP)
            try:
                time.sleep(self.args.freeze_s)
            finally:
                _signal(self.redis.proc, signal.SIGCONT)
        elif kind == "ingest_kill":
            os.kill(self.pid_of(f"ingest:{cam}"), signal.SIGKILL)
            cams = [cam]
        elif kind == "engine_kill":
            os.kill(self.pid_of("streamer:engine"), signal.SIGKILL)
        t_end = time.monotonic()
        rec["camera"] = cam if len(cams) == 1 else "all"
        rec["duration_s"] = round(t_end - t_start, 2)
        rec["recovery_s"] = self.wait_recovered(t_end, cams)
        if kind.startswith("redis_"):
            with self._lock:
                during = [s["spool"] for ts, s in self.samples if ts >= t_start]
            rec["spooled_max"] = int(max(during, default=0))
            rec["delivery_recovery_s"] = self.wait_spool_empty(t_end)
        log(f"{rec}")
        return rec

    def run(self) -> dict[str, Any]:
        a = self.args
        short = a.minutes < 6
        lead = a.lead_s if a.lead_s is not None else (20.0 if short else 120.0)
        tail = 15.0 if short else 120.0
        gap = a.gap_s if a.gap_s is not None else (5.0 if short else 20.0)
        end = self.t0 + a.minutes * 60
        faults: list[dict[str, Any]] = []
        load_before = os.getloadavg()
        if a.faults:
            limit = a.rounds * len(a.kinds) if a.rounds is not None else 1 << 30
            if a.slot_s:  # whole rounds on a clock: the first and last rounds see the same faults at the same offsets
                rounds = int((a.minutes * 60 - tail - lead) // (a.slot_s * len(a.kinds)))
                limit = min(limit, rounds * len(a.kinds))
                self.fault_span = (lead, lead + limit * a.slot_s)
            time.sleep(max(0.0, self.t0 + lead - time.monotonic()))
            n = 0
            while n < limit and time.monotonic() < end - tail:
                if self.streamer is None or self.streamer.poll() is not None:
                    break
                due = self.t0 + lead + n * a.slot_s if a.slot_s else time.monotonic()
                time.sleep(max(0.0, due - time.monotonic()))
                rec = self.fault(a.kinds[n % len(a.kinds)], n)
                if a.slot_s:
                    rec["late_s"] = round(rec["at_s"] - (due - self.t0), 2)  # its predecessor took longer than its slot
                faults.append(rec)
                n += 1
                if not a.slot_s:
                    time.sleep(gap)
        while time.monotonic() < end and self.streamer is not None and self.streamer.poll() is None:
            time.sleep(0.2)
        t_end_run = time.monotonic()
        load_after = os.getloadavg()
        stop_s = self.stop_streamer()
        self._done.set()
        return self.report(faults, t_end_run, stop_s, load_before, load_after)

    def stop_streamer(self) -> float | None:
        """SIGINT to streamer's main pid, as a supervisor would; its exit time (None: it had to be killed)."""
        if self.streamer is None or self.streamer.poll() is not None:
            return None
        t = time.monotonic()
        self.streamer.send_signal(signal.SIGINT)
        try:
            self.streamer.wait(timeout=10)
            return round(time.monotonic() - t, 2)
        except subprocess.TimeoutExpired:
            os.killpg(self.streamer.pid, signal.SIGKILL)
            self.streamer.wait()
            return None

    def leftovers(self, grace_s: float = LEFTOVER_GRACE_S) -> list[int]:
        """Processes seen under streamer that still run `grace_s` after it exited (a child the kernel is
        still tearing down when the main pid's exit is reaped is not a leftover)."""
        deadline = time.monotonic() + grace_s
        while True:
            left = sorted(p for p, st in self.seen_pids.items() if st is not None and start_time(p) == st)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    # -- results
    def report(self, faults: list[dict[str, Any]], t_end_run: float, stop_s: float | None,
               load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict[str, Any]:
        accepted = [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()] if self.journal.exists() else []
        accepted_ids = {a["id"] for a in accepted}
        client = redis.Redis.from_url(self.redis.url, socket_timeout=10)
        entries: list[dict[str, Any]] = []
        last = "-"
        while True:
            page = client.xrange("streamer:alerts", min=last, max="+", count=1000)
            if last != "-":
                page = page[1:]
            if not page:
                break
            for sid, fields in page:
                entries.append(json.loads(fields[b"json"]))
            last = page[-1][0].decode()
        client.close()
        stream_ids = [e["id"] for e in entries]
        unique = set(stream_ids)
        spool_file = self.workdir / "spool" / "alerts.jsonl"
        spooled = sum(1 for line in spool_file.read_text().splitlines() if line.strip()) if spool_file.exists() else 0
        run_s = t_end_run - self.t0

        def p99_alerts(lo: float, hi: float) -> float | None:
            lat = []
            for e in entries:
                t = datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() - self.t0_wall
                e2e = (e.get("latency_ms") or {}).get("end_to_end")
                if lo <= t <= hi and e2e is not None:
                    lat.append(e2e)
            return round(float(np.percentile(lat, 99)), 1) if lat else None

        win = 600.0 if run_s >= 1800 else min(120.0, run_s)  # an hour's soak: its first and last 10 minutes
        lo, hi = self.fault_span if self.fault_span and self.fault_span[1] - self.fault_span[0] >= 2 * win else (0.0, run_s)

        def p99_windows(a: float, b: float) -> float | None:
            sa, sb = self.sample_at(self.t0 + a), self.sample_at(self.t0 + b)
            return histogram_p99(sa["buckets"], sb["buckets"]) if sa and sb else None
        warm = self.args.warmup_s if self.args.warmup_s is not None else min(120.0, 0.25 * run_s)
        mem = [(t - self.t0, r, p) for t, r, p, _ in self.memory if warm <= t - self.t0 <= run_s]

        def growth(col: int) -> tuple[float | None, float | None]:
            if len(mem) < 3:
                return None, None
            t = np.array([x[0] for x in mem])
            y = np.array([x[col] for x in mem], dtype=float)
            slope, icpt = np.polyfit(t, y, 1)
            base = icpt + slope * t[0]
            return round(float(slope * (t[-1] - t[0]) / base * 100), 2), round(float(slope * 3600 / base * 100), 2)

        rss_pct, rss_hour = growth(1)
        pss_pct, pss_hour = growth(2)
        leftover = self.leftovers()
        by_event: dict[str, int] = {}
        for e in entries:
            by_event[f"{e['event']}:{e['state']}"] = by_event.get(f"{e['event']}:{e['state']}", 0) + 1
        return {
            "cameras": self.args.cameras,
            "minutes": self.args.minutes,
            "run_s": round(run_s, 1),
            "faults_enabled": bool(self.args.faults),
            "thresholds": self.thresholds,
            "alerts_accepted": len(accepted_ids),
            "alerts_delivered_unique": len(unique & accepted_ids),
            "alerts_lost": len(accepted_ids - unique),
            "alerts_duplicated": len(stream_ids) - len(unique),
            "alerts_in_stream_not_accepted": len(unique - accepted_ids),
            "alerts_spooled_at_exit": spooled,
            "alerts_by_event": by_event,
            "faults": faults,
            "recovery_s_max": max((f["recovery_s"] for f in faults if f["recovery_s"] is not None), default=None),
            "faults_not_recovered": sum(1 for f in faults if f["recovery_s"] is None),
            "rss_growth_pct": rss_pct,
            "rss_growth_pct_per_hour": rss_hour,
            "pss_growth_pct": pss_pct,
            "pss_growth_pct_per_hour": pss_hour,
            "rss_mb_start": round(mem[0][1] / 1024, 1) if mem else None,
            "rss_mb_end": round(mem[-1][1] / 1024, 1) if mem else None,
            "warmup_s": round(warm, 1),
            "p99_ms_first": p99_alerts(lo, lo + win),
            "p99_ms_last": p99_alerts(hi - win, hi),
            "p99_ms_windows_first": p99_windows(lo, lo + win),
            "p99_ms_windows_last": p99_windows(hi - win, hi),
            "latency_window_s": round(win, 1),
            "latency_span_s": [round(lo, 1), round(hi, 1)],  # the first window starts at lo, the last ends at hi
            "p99_ms_first_run": p99_alerts(0, win),
            "p99_ms_last_run": p99_alerts(run_s - win, run_s),
            "timeline": self.timeline(),
            "windows": int(sum((self.last() or {"detected": {}})["detected"].values())),
            "stop_s": stop_s,
            "streamer_exit_code": self.streamer.returncode if self.streamer else None,
            "leftover_processes": leftover,
            "leftover_names": [self.seen_names.get(p, "") for p in leftover],
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "loadavg_before": [round(x, 2) for x in load_before],
                        "loadavg_after": [round(x, 2) for x in load_after]},
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "model_version": model_version(),
        }

    def close(self) -> None:
        self._done.set()
        if self.streamer is not None and self.streamer.poll() is None:
            try:
                os.killpg(self.streamer.pid, signal.SIGKILL)
            except OSError:
                pass
            self.streamer.wait()
        self.rtsp.stop()
        self.redis.stop()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log(f"kept {self.workdir}")


def fault_kinds(value: str) -> list[str]:
    kinds = value.split(",")
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kind {', '.join(unknown)} (kinds: {', '.join(FAULTS)})")
    return kinds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--minutes", type=float, default=10.0, help="run length, from every camera's first window")
    p.add_argument("--faults", action="store_true", help="inject the faults (without: a plain soak)")
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--clip", default=str(CLIP), help="file served to every camera (default: the demo clip)")
    p.add_argument("--threshold", action="append", default=[], metavar="CLASS=VALUE",
                   help="detect.thresholds override (repeatable); default: one class chosen on the clip (see regular_threshold)")
    p.add_argument("--model-thresholds", action="store_true", help="keep the model's own thresholds (alerts as the model makes them)")
    p.add_argument("--rounds", type=int, default=None,
                   help="inject each fault this many times, then run on quietly (default: as many as fit)")
    p.add_argument("--kinds", type=fault_kinds, default=list(FAULTS),
                   help=f"faults to inject, in turn, comma-separated (default: {','.join(FAULTS)})")
    p.add_argument("--stall-s", type=float, default=5.0, help="camera_stall: seconds the ingest process is stopped")
    p.add_argument("--freeze-s", type=float, default=20.0, help="redis_freeze: seconds Redis is stopped")
    p.add_argument("--stall-timeout", type=float, default=10.0, help="cameras' stall_timeout")
    p.add_argument("--lead-s", type=float, default=None, help="seconds before the first fault (default 20, 120 from 6 min)")
    p.add_argument("--gap-s", type=float, default=None, help="seconds between a fault's recovery and the next (default 5, 20 from 6 min)")
    p.add_argument("--slot-s", type=float, default=None,
                   help="faults on a clock instead: one every SLOT s from the lead, in whole rounds of the kinds (no --gap-s)")
    p.add_argument("--warmup-s", type=float, default=None, help="RSS samples before this are not fitted (default min(120, 25%% of the run))")
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the working directory (logs, journal, AOF)")
    args = p.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    soak = Soak(args)
    try:
        soak.start()
        log(f"cameras {args.cameras}, every one has windows; running {args.minutes:g} min{' with faults' if args.faults else ''}")
        out = soak.run()
    finally:
        soak.close()
    text = json.dumps(out, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    keys = ("alerts_accepted", "alerts_delivered_unique", "alerts_lost", "alerts_duplicated", "recovery_s_max",
            "faults_not_recovered", "rss_growth_pct", "p99_ms_first", "p99_ms_last", "stop_s")
    print(json.dumps({k: out[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
