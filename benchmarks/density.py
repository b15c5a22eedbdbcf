"""Cameras per machine: how many live cameras streamer holds in real time, beside what decoding alone allows.

    python -m benchmarks.density --json FILE [--quick] [--cases 720p25 1080p30 1080p30+360p] [--measure-s 20]

Cameras: H.264 + AAC files made with PyAV (benchmarks/ingest.py's CCTV-like scene, encoded as a camera
encodes: no B-frames, a keyframe every 2 s; each camera its own scene, so no two show the same pixels), played as live file cameras (`realtime: true`, `loop: true`:
paced on their timestamps, a window dropped when the engine falls behind, exactly as for a stream).
Files rather than the GStreamer RTSP server (tests/rtsp_server.py): on a 2-core machine the server's
own CPU would be taken from the system measured; what files leave out is RTP depacketising in FFmpeg,
small beside decoding. Cases: `720p25`, `1080p30`, and `1080p30+360p` (a 1080p30 main stream with a
640x360 30 fps substream as `detect_url`: the substream decoded for the model, the main stream's
keyframes only, for evidence; audio from the substream).

Each step runs the default model (ONNX Runtime CPU, default engine settings) and a real redis-server on a
free loopback port; the pipeline runs in a child process (`--_step`) with default settings otherwise
(evidence on, every camera in its anomaly learning period), so the process tree is streamer's own. After
every camera has delivered a window and a warm-up, a measuring period: real time holds when no window was
dropped, the p99 of every window's end-to-end latency (from the arrival of its last input to detection
and alert hand-off done, as `streamer_end_to_end_latency_seconds`) is at most 200 ms, and at least 97% of
the windows due (cameras x period / hop) went through detection (a file camera that cannot decode in
real time falls behind rather than dropping). Cameras join the running pipeline one by one (its API's
hot add) at phases spread over the files' 2 s keyframe interval, so that, as real cameras, they are not
in step: identical files started together would decode their keyframes and deliver their windows all
at once (measured: slow windows then come in bursts every 2 s). The camera count starts at a quarter of
the decode-only bound (at least 2) and grows x1.5 until real time breaks (x0.6 when the first step
fails), then is bisected (`--steps` steps at most); `cameras_realtime` is the largest count that held.
`machine_busy_pct` is the whole machine's CPU use over the period (/proc/stat), others' work included:
on a shared machine (Linux gives each session's process group a fair share, whatever its nice value)
the benchmark gets what is left, and says so.

CPU per stage, over the measuring period, from /proc/<pid>/stat and /proc/<pid>/task/<tid>/stat (utime +
stime) of every process: `decode` = the ingest processes' FFmpeg decoder threads (named av:<codec>:df<n>;
those that exited during the period too: video decoding, with FFmpeg's frame threads as the ingest
sets them); `windowing` = the windows' own conversion and stacking time (Window.window_s, on the
ingest main thread; wall clock, so on a busy machine it includes preemption, capped at that thread's
CPU time);
`ingest_other` = the rest of the ingest processes (demux, per-packet Python, audio decode and
resampling, ring writes, the queue feeder thread; for a substream also the main stream's reader);
`engine` = the engine process; `detection_delivery` = the main process (detection, events, alert
hand-off, stats; the benchmark's sampling thread excluded) plus redis-server.

`decode_only_bound`: as many processes as CPUs each decode the same camera (video and audio; with a
substream: the substream fully and the main stream's keyframes) with the ingest's thread settings
(thread_type AUTO, FFmpeg's thread count) as fast as they can for `--decode-s`; the bound is the stream
seconds decoded per wall second, summed: how many such cameras decoding alone keeps up with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

# Cases: (main stream name, (w, h, fps)), detect stream or None
CASES: dict[str, tuple[tuple[str, tuple[int, int, int]], tuple[str, tuple[int, int, int]] | None]] = {
    "720p25": (("720p25", (1280, 720, 25)), None),
    "1080p30": (("1080p30", (1920, 1080, 30)), None),
    "1080p30+360p": (("1080p30", (1920, 1080, 30)), ("360p30", (640, 360, 30))),
}
P99_LIMIT_MS = 200.0
GOP_S = 2.0  # the generated files' keyframe interval
MIN_DELIVERED = 0.97
HOP = 0.5


def media(case: str, seconds: float, variant: int = 0) -> tuple[Path, Path | None]:
    """The case's files; `variant`: another scene of the same kind. Every camera of a step gets its own, as
    real cameras see different scenes: identical pictures would let the engine reuse one camera's poses
    for another (its pose cache is keyed by the pixels), which no real fleet gives it."""
    from benchmarks.ingest import make_media

    (mname, mgeo), det = CASES[case]
    main = make_media(mname, seconds, bframes=False, geometry=mgeo, variant=variant)
    return main, (make_media(det[0], seconds, bframes=False, geometry=det[1], variant=variant) if det else None)


# ---- decode only ------------------------------------------------------------------------------------
def _decode_worker(main: str, detect: str | None, seconds: float, threads: int = 0) -> dict:
    """One camera's decoding, as fast as it goes, for `seconds` of wall time: stream seconds decoded."""
    import av

    def opened(path: str, keyframes_only: bool):
        c = av.open(path)
        streams = list(c.streams.video[:1]) + list(c.streams.audio[:1])
        for s in streams:
            s.thread_type = "AUTO"
            if threads:
                s.codec_context.thread_count = threads
        if keyframes_only:
            c.streams.video[0].codec_context.skip_frame = "NONKEY"
            streams = streams[:1]
        return c, c.demux(streams)

    full = detect or main
    key = main if detect else None
    done = 0.0  # stream seconds decoded (the full stream's video time)
    t_end = time.monotonic() + seconds
    cpu0 = time.process_time()
    while time.monotonic() < t_end:
        c, pk = opened(full, False)
        k, kpk = opened(key, True) if key else (None, None)
        last = 0.0
        for packet in pk:
            for frame in packet.decode():
                if packet.stream.type == "video" and frame.time is not None:
                    last = frame.time
            if kpk is not None:  # the main stream's keyframes up to the same time
                for kp in kpk:
                    if kp.is_keyframe:  # as the ingest's main-stream reader: the rest is not decoded at all
                        kp.decode()
                    if kp.pts is not None and kp.time_base is not None and kp.pts * kp.time_base >= last:
                        break
            if time.monotonic() >= t_end:
                break
        done += last
        c.close()
        if k is not None:
            k.close()
    return {"stream_s": done, "cpu_s": time.process_time() - cpu0}


def decode_only_bound(main: Path, detect: Path | None, seconds: float, workers: int) -> dict:
    from streamer.procs import popen_preexec  # children get SIGKILL when the benchmark dies, however it dies

    threads = 0  # the ingest's setting: FFmpeg's choice (frame threads)
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.density", "--_decode", str(main), str(detect or ""), str(seconds),
                               str(threads)],
                              stdout=subprocess.PIPE, text=True, preexec_fn=popen_preexec) for _ in range(workers)]
    t0 = time.monotonic()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = time.monotonic() - t0
    per = [o["stream_s"] / seconds for o in outs]
    return {"decode_only_bound": round(sum(per), 2), "workers": workers, "seconds": seconds, "decoder_threads": threads,
            "per_worker": [round(x, 2) for x in per], "wall_s": round(wall, 1)}


# ---- one step: N cameras through the pipeline -----------------------------------------------------
def _threads(pid: int) -> dict[int, tuple[str, float]]:
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _process_cpu(pid: int) -> float:
    """utime + stime of a whole process, threads that have exited included (a looping file's decoder
    threads end at each reopen)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")) / 1024
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0.0


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def _snapshot(pids: dict[str, list[int]]) -> dict:
    return {"threads": {role: {(pid, tid): v for pid in ps for tid, v in _threads(pid).items()} for role, ps in pids.items()},
            "procs": {role: {pid: _process_cpu(pid) for pid in ps} for role, ps in pids.items()},
            "machine": _machine_busy()}


def _delta(a: dict, b: dict, skip_tid: int) -> dict[str, float]:
    """CPU seconds between two snapshots, by role; the ingest processes split into decode (FFmpeg's threads,
    the exited ones too: whatever the process used beyond its other threads), main thread, other threads."""
    out: dict[str, float] = {}
    for role, procs in b["procs"].items():
        for pid, cpu in procs.items():
            out[role] = out.get(role, 0.0) + cpu - a["procs"][role].get(pid, 0.0)
    skipped = 0.0
    for (pid, tid), (comm, cpu) in b["threads"]["main"].items():
        if tid == skip_tid:
            skipped += cpu - a["threads"]["main"].get((pid, tid), (comm, 0.0))[1]
    out["main"] -= skipped
    for (pid, tid), (comm, cpu) in b["threads"]["ingest"].items():
        if comm.startswith("av:"):
            continue
        kind = "ingest_main_thread" if tid == pid else "ingest_threads"
        out[kind] = out.get(kind, 0.0) + cpu - a["threads"]["ingest"].get((pid, tid), (comm, 0.0))[1]
    out["decode"] = out.pop("ingest") - out.get("ingest_main_thread", 0.0) - out.get("ingest_threads", 0.0)
    busy = (b["machine"][0] - a["machine"][0]) / max(b["machine"][1] - a["machine"][1], 1)
    out["machine_busy"] = busy
    return out


def _step(spec: dict) -> dict:
    """Runs in a child process: the pipeline with `cameras` cameras; prints one JSON line."""
    metrics_dir = tempfile.mkdtemp(prefix="streamer-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported
    from streamer.config import parse_config
    from streamer.outputs import metrics as m
    from streamer.outputs import stats as stats_mod
    from streamer.pipeline import Pipeline

    work = Path(spec["workdir"])
    n = spec["cameras"]
    cams = [{"id": f"cam{i:02d}", "url": spec["main"][i], "loop": True,
             **({"detect_url": spec["detect"][i]} if spec["detect"] else {})} for i in range(n)]
    full = parse_config({"cameras": cams, "http": {"port": 0},
                         "redis": {"url": spec["redis_url"], "spool_dir": str(work / "spool"), "stats_interval": 5},
                         "anomaly": {"dir": str(work / "normality")}})
    # Cameras are not in step with one another: each joins at its own phase of the files' 2 s GOP (golden-ratio
    # spread, so the 0.5 s hop's phases spread too), as cameras that connect at different times. Started
    # together, identical files would decode their keyframes and deliver their windows all at once.
    phases = sorted(((i * 0.618034 * GOP_S) % GOP_S, i) for i in range(1, n))
    cfg = full.model_copy(update={"cameras": full.cameras[:1]})
    state = {"measuring": False}
    lat: list[float] = []
    slow: list[float] = []
    sums = {"window_s": 0.0, "decode_s": 0.0, "windows": 0}

    def on_window(r) -> None:
        if state["measuring"]:
            sums["window_s"] += r.window.window_s
            sums["decode_s"] += r.window.decode_s
            sums["windows"] += 1

    t_setup = time.monotonic()
    pipe = Pipeline(cfg, on_window=on_window)
    orig = pipe.stats.window

    def window(cam: str, latency_s: float, *args, **kwargs) -> None:
        orig(cam, latency_s, *args, **kwargs)
        if state["measuring"]:
            lat.append(latency_s * 1000)
            if latency_s * 1000 > P99_LIMIT_MS:  # when the slow ones happen (periodic: something on a timer)
                slow.append(round(time.monotonic() - state["t0"], 2))

    pipe.stats.window = window  # type: ignore[method-assign]
    result: dict = {"cameras": n}

    def sampler() -> None:
        try:
            while not pipe.running:
                time.sleep(0.05)
            t_add = time.monotonic()
            for phase, i in phases:
                time.sleep(max(t_add + phase - time.monotonic(), 0))
                pipe.call("add", full.cameras[i])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (len(pipe.stats.cams) == n and all(c.windows for c in pipe.stats.cams.values())):
                time.sleep(0.2)
            result["startup_s"] = round(time.monotonic() - t_setup, 1)
            time.sleep(spec["warm_s"])
            pids = {"ingest": list(pipe.pids.values()), "engine": [pipe.engine.proc.pid], "main": [os.getpid()],
                    "redis": [spec["redis_pid"]]}
            dropped0 = sum(stats_mod.process_counts().dropped.values())
            snap0, t0 = _snapshot(pids), time.monotonic()
            state["t0"] = t0
            state["measuring"] = True
            time.sleep(spec["measure_s"])
            state["measuring"] = False
            snap1, t1 = _snapshot(pids), time.monotonic()
            dropped1 = sum(stats_mod.process_counts().dropped.values())
            result["rss_mb"] = {role: round(sum(_rss_mb(p) for p in ps), 1) for role, ps in pids.items()}
            result.update(period_s=round(t1 - t0, 2), cpu=_delta(snap0, snap1, threading.get_native_id()),
                          dropped=int(dropped1 - dropped0), loadavg=round(os.getloadavg()[0], 2))
        except Exception as e:  # reported, not hidden
            result["error"] = f"{e.__class__.__name__}: {e}"
        finally:
            pipe.stop()

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    try:
        pipe.run()
    finally:
        pipe.close()
        th.join(timeout=5)
        m.cleanup()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    period = result.get("period_s") or spec["measure_s"]
    due = n * period / HOP
    arr = np.asarray(lat) if lat else np.asarray([np.nan])
    cpu = result.get("cpu", {})
    main_thread = cpu.get("ingest_main_thread", 0.0)
    ingest_total = cpu.get("decode", 0.0) + main_thread + cpu.get("ingest_threads", 0.0)
    decode = cpu.get("decode", 0.0)  # FFmpeg's frame threads
    windowing = min(sums["window_s"], main_thread)
    stages = {"decode": decode, "windowing": windowing,
              "ingest_other": ingest_total - decode - windowing,
              "engine": cpu.get("engine", 0.0), "detection_delivery": cpu.get("main", 0.0) + cpu.get("redis", 0.0)}
    total = sum(stages.values())
    result.update(
        windows=len(lat), windows_due=round(due, 1), delivered=round(len(lat) / due, 3) if due else 0.0,
        p50_ms=round(float(np.percentile(arr, 50)), 1), p99_ms=round(float(np.percentile(arr, 99)), 1),
        max_ms=round(float(np.max(arr)), 1),
        cpu_s={k: round(v, 2) for k, v in stages.items()},
        cpu_share={k: round(v / total, 3) if total else 0.0 for k, v in stages.items()},
        cpu_machine_pct=round(100 * total / (period * (os.cpu_count() or 1)), 1),
        cpu_per_camera_pct={k: round(100 * v / period / n, 2) for k, v in stages.items()},
    )
    result["slow_windows_at_s"] = slow[:200]  # seconds into the period of the windows over the p99 limit
    result["machine_busy_pct"] = round(100 * cpu.get("machine_busy", 0.0), 1)  # every process on the machine, ours included
    result.pop("cpu", None)
    result["realtime"] = bool("error" not in result and result["dropped"] == 0 and result["p99_ms"] <= P99_LIMIT_MS
                              and result["delivered"] >= MIN_DELIVERED)
    return result


def run_step(n: int, case: str, file_s: float, redis_url: str, redis_pid: int, workdir: Path,
             warm_s: float, measure_s: float) -> dict:
    files = [media(case, file_s, i) for i in range(n)]  # made before the step, cached under .cache/bench
    spec = {"cameras": n, "main": [str(m) for m, _ in files],
            "detect": [str(d) for _, d in files] if files[0][1] else None, "redis_url": redis_url,
            "redis_pid": redis_pid, "workdir": str(workdir / f"step{n}_{time.monotonic_ns()}"), "warm_s": warm_s,
            "measure_s": measure_s}
    Path(spec["workdir"]).mkdir(parents=True)
    from streamer.procs import popen_preexec

    p = subprocess.run([sys.executable, "-m", "benchmarks.density", "--_step", json.dumps(spec)],
                       capture_output=True, text=True, timeout=measure_s + warm_s + 240, preexec_fn=popen_preexec)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"cameras": n, "realtime": False, "error": (p.stderr or p.stdout)[-1500:]}
    return json.loads(lines[-1])


def search(case: str, bound: float, steps: int, run, counts: list[int] | None = None) -> tuple[list[dict], dict | None]:
    """Grow the camera count until real time breaks, then bisect. `run(n)` -> a step's result."""
    done: dict[int, dict] = {}

    def go(n: int) -> bool:
        r = run(n)
        done[n] = r
        print(f"  {case:14} {n:3d} cameras: realtime={r['realtime']!s:5} p99={r.get('p99_ms', float('nan')):7.1f} ms "
              f"dropped={r.get('dropped', '-')} delivered={r.get('delivered', '-')} cpu={r.get('cpu_machine_pct', '-')}%"
              f"{'  ' + r['error'].splitlines()[-1] if r.get('error') else ''}", flush=True)
        return bool(r["realtime"])

    if counts:
        for n in counts:
            go(n)
    else:
        n = max(2, int(0.25 * bound))
        ok, bad = 0, None
        while len(done) < steps:
            if go(n):
                ok = n
                if bad is None:
                    n = max(n + 1, int(math.ceil(n * 1.5)))
                    continue
            else:
                bad = n
                if ok == 0 and n > 1:
                    n = max(1, int(n * 0.6))
                    continue
            if bad is None or bad - ok <= 1:
                break
            n = (ok + bad) // 2
    runs = [done[k] for k in sorted(done)]
    passed = [r for r in runs if r["realtime"]]
    return runs, (max(passed, key=lambda r: r["cameras"]) if passed else None)


def start_redis() -> tuple[subprocess.Popen, str, int]:
    from benchmarks.e2e import free_port
    from streamer.outputs.alerts import redis_ping
    from streamer.procs import popen_preexec

    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, preexec_fn=popen_preexec)
    for _ in range(100):
        if redis_ping(port):
            break
        time.sleep(0.05)
    return server, f"redis://127.0.0.1:{port}/0", server.pid


def machine() -> dict:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = shutil.which("nvidia-smi") is not None
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(), "cpu_model": model, "gpu": gpu,
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--_step"]:
        print(json.dumps(_step(json.loads(argv[1]))), flush=True)
        return 0
    if argv[:1] == ["--_decode"]:
        print(json.dumps(_decode_worker(argv[1], argv[2] or None, float(argv[3]), int(argv[4]))), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 camera, short periods, short files")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--measure-s", type=float, default=20.0, help="measuring period of each step")
    p.add_argument("--warm-s", type=float, default=5.0, help="warm-up after every camera delivered a window")
    p.add_argument("--decode-s", type=float, default=10.0, help="decode-only run length")
    p.add_argument("--steps", type=int, default=4, help="most steps (camera counts) per case")
    p.add_argument("--cameras", type=int, nargs="+", default=None, help="these counts instead of the search")
    p.add_argument("--file-seconds", type=float, default=20.0, help="length of the generated files (looped)")
    args = p.parse_args(argv)
    if args.quick:
        args.measure_s, args.warm_s, args.decode_s, args.file_seconds = 3.0, 1.0, 1.0, 4.0
        args.cameras = args.cameras or [1]
    from engines import spec as espec

    out: dict = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                 "model_version": espec.load_spec(espec.DEFAULT_MODEL).version,  # the default model, as the config names none
                 "loadavg_before": round(os.getloadavg()[0], 2), "nice": os.nice(0),
                 "settings": {"measure_s": args.measure_s, "warm_s": args.warm_s, "decode_s": args.decode_s,
                              "p99_limit_ms": P99_LIMIT_MS, "min_delivered": MIN_DELIVERED, "hop_s": HOP,
                              "cameras": "live-paced looping files (PyAV-made H.264 + AAC, no B-frames, GOP 2 s)",
                              "quick": args.quick},
                 "cases": {}}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM: the finally blocks stop what was started
    server, url, pid = start_redis()
    t_start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="density-") as tmp:
            for case in args.cases:
                main_file, detect_file = media(case, args.file_seconds)
                bound = decode_only_bound(main_file, detect_file, args.decode_s, os.cpu_count() or 1)
                print(f"{case}: decode-only bound {bound['decode_only_bound']:.2f} cameras", flush=True)
                runs, best = search(case, bound["decode_only_bound"], args.steps,
                                    lambda n: run_step(n, case, args.file_seconds, url, pid, Path(tmp), args.warm_s, args.measure_s),
                                    args.cameras)
                at_max = best or {}
                out["cases"][case] = {
                    "cameras_realtime": best["cameras"] if best else 0,
                    "p99_ms_at_max": at_max.get("p99_ms"),
                    "cpu_share_at_max": at_max.get("cpu_share"),
                    "cpu_per_camera_pct_at_max": at_max.get("cpu_per_camera_pct"),
                    "decode_only_bound": bound["decode_only_bound"],
                    "ratio_to_bound": round((best["cameras"] if best else 0) / bound["decode_only_bound"], 3) if bound["decode_only_bound"] else None,
                    "decode_only": bound, "steps": runs,
                    "streams": {"main": main_file.name, "detect": detect_file.name if detect_file else None},
                }
    finally:
        server.terminate()
        server.wait()
    out["wall_s"] = round(time.monotonic() - t_start, 1)
    print(f"\n{'case':14} {'cameras_realtime':>16} {'p99_ms_at_max':>14} {'decode_only_bound':>18} {'ratio':>6}  cpu share at max")
    for case, r in out["cases"].items():
        share = " ".join(f"{k} {v:.2f}" for k, v in (r["cpu_share_at_max"] or {}).items())
        print(f"{case:14} {r['cameras_realtime']:16d} {r['p99_ms_at_max'] or float('nan'):14.1f} {r['decode_only_bound']:18.2f} "
              f"{r['ratio_to_bound'] or 0:6.2f}  {share}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
