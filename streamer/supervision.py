"""The cameras' ingest processes, supervised from the main process: one per camera, restarted when it
dies, stopped when its camera is removed. The Pipeline drives the Supervisor from its own thread.

Restarts keep the timeline: a respawned ingest process continues its camera's source time from the
last window delivered (so an event open across the restart closes normally). A camera whose process
dies more than MAX_RESTARTS_PER_MIN times in a minute is given up ("failed").

Cameras change while running (`Pipeline.call("add" | "remove" | "replace" | "detect", ...)`, from the
HTTP API and SIGHUP through streamer/fleet.py): the change runs on the pipeline's thread between two
engine messages. An added camera gets a fresh ring, which the engine attaches (EngineClient.attach), and
its own ingest process; a removed one's open events end (reason "stop"), its ingest process is asked to
stop (terminated after STOP_GRACE_S), the engine detaches its ring and the ring is unlinked. No other
camera, ring or process is touched. `detect` changes a camera's thresholds and loudness live (from the
next window on; its ingest process and timeline go on); `replace` (another source or setting) restarts
that camera alone, its timeline continued.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from streamer import procs
from streamer.config import CameraConfig
from streamer.ingest.supervisor import ingest_main
from streamer.outputs import metrics as m
from streamer.ring import RingHandle, WindowRing, share

log = logging.getLogger(__name__)

MAX_RESTARTS_PER_MIN = 5
STOP_GRACE_S = 1.0  # ingest processes and the engine: asked to stop, then terminated


class RestartBudget:
    """The one restart rule, for the engine and for each camera's ingest process: at most
    MAX_RESTARTS_PER_MIN restarts in any minute; one more means give up."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def spend(self, now: float) -> bool:
        """Count a restart at `now`; False when it is over the budget."""
        self.times = [t for t in self.times if now - t < 60] + [now]
        return len(self.times) <= MAX_RESTARTS_PER_MIN


@dataclass
class _Removal:
    """A removed camera whose ingest process is ending; its ring is unlinked once it has."""

    camera: str
    proc: Any
    ring: WindowRing
    deadline: float  # terminated after this (time.monotonic())
    fut: Future


class Supervisor:
    """The ingest processes and the camera changes. Every method runs on the pipeline's thread.

    `pipe` keeps each camera's detection state and its ring (`pipe.rings`); the supervisor calls
    `pipe.attach_camera`, `pipe.detach_camera` and `pipe.detect_settings`, and keeps `pipe.cfg.cameras`
    equal to the cameras it runs."""

    def __init__(self, pipe: Any, ctx: Any, geo: Any, should_stop: Callable[[], bool]) -> None:
        self.pipe, self.ctx, self.geo, self.should_stop = pipe, ctx, geo, should_stop
        self.cams: dict[str, CameraConfig] = {c.id: c for c in pipe.cfg.cameras}
        self.procs: dict[str, Any] = {}  # camera -> its ingest process
        self.state: dict[str, str] = {}  # camera -> running | ended | failed
        self.stops: dict[str, Any] = {}  # camera -> its ingest process's stop event
        self.updates: dict[str, Any] = {}  # camera -> the queue that hands its ingest process a fresh ring
        self.budgets: dict[str, RestartBudget] = {}
        self.last: dict[str, tuple[float, float]] = {}  # camera -> (end, arrival) of its last window: the timeline to continue
        self.removing: list[_Removal] = []
        # the loop ends when every source has ended, unless the fleet is managed while running (cameras
        # added or removed through the API or SIGHUP) or started empty: then it runs until stopped
        self.hold = False

    def start(self) -> None:
        """An ingest process for each camera of the config."""
        if not self.cams:  # more replicas than this one's share of cameras: idle until stopped (or a camera is added)
            s = self.pipe.cfg.shard
            log.warning("shard %d of %d: no cameras hash to this replica", s.index or 0, s.replicas)
            self.hold = True
        for cid in self.cams:
            self._spawn(cid)
            self.budgets[cid] = RestartBudget()

    def busy(self) -> bool:
        """Whether the pipeline goes on: a source still delivers, or the fleet is held open."""
        return self.hold or any(s == "running" for s in self.state.values())

    def delivered(self, camera: str, end: float, arrival: float) -> None:
        """A camera's last window (its source end time and arrival): where a respawned process continues."""
        self.last[camera] = (end, arrival)

    def _spawn(self, cid: str) -> None:
        cam, ctx = self.cams[cid], self.ctx
        self.stops[cid], self.updates[cid] = ctx.Event(), ctx.Queue()
        objects = self.pipe.objects.fresh(cid) if self.geo.objects else None  # a fresh queue per process
        rings = RingHandle(self.pipe.rings[cid], self.updates[cid], self.pipe.evidence.rings.get(cid), objects)
        kf = self.pipe.keyframe_width(cam)
        p = ctx.Process(target=ingest_main, args=(cam, self.geo, rings, self.stops[cid], kf, self.last.get(cid), os.getpid()),
                        name=f"streamer:ingest:{cid}", daemon=True)
        p.start()
        self.procs[cid] = p
        self.state[cid] = "running"  # until its source ends or it is given up on

    def _set_cameras(self) -> None:
        self.pipe.cfg = self.pipe.cfg.model_copy(update={"cameras": list(self.cams.values())})

    # ---- camera changes (Pipeline.call) -------------------------------------------------------------
    def apply(self, commands: queue.Queue) -> None:
        """Run the changes waiting in `commands` ((op, args, Future) from Pipeline.submit), in order."""
        ops = {"add": self.add, "remove": self.remove, "replace": self.replace, "detect": self.detect}
        while True:
            try:
                op, args, fut = commands.get_nowait()
            except queue.Empty:
                return
            try:
                ops[op](fut, *args)
            except Exception as e:
                if not fut.done():
                    fut.set_exception(e)

    def add(self, fut: Future, cam: CameraConfig, resume: bool = False) -> None:
        """A new camera: its ring, its detection state, its ingest process (`resume`: continuing its timeline)."""
        if cam.id in self.cams:
            raise KeyError(f"camera {cam.id} exists")
        ring = self.pipe.attach_camera(cam)  # a normality file that cannot be used fails here (ConfigError)
        self.cams[cam.id] = cam
        self._set_cameras()
        if not resume:
            self.last.pop(cam.id, None)
        self._spawn(cam.id)
        self.budgets[cam.id] = RestartBudget()
        self.hold = True
        pid = self.procs[cam.id].pid
        log.info("camera %s: added (ingest pid %d)", cam.id, pid)
        fut.set_result({"id": cam.id, "pid": pid, "ring": ring.shm.name})

    def remove(self, fut: Future, cid: str, replacing: bool = False) -> None:
        """Stop a camera; `fut` gets its result once its process has ended and its ring is unlinked (`reap`)."""
        if cid not in self.cams:
            raise KeyError(f"camera {cid} is not running here")
        self.stops.pop(cid).set()
        self.updates.pop(cid, None)
        self.pipe.objects.drop(cid)
        ring = self.pipe.detach_camera(cid, replacing)
        p = self.procs.pop(cid)
        del self.cams[cid], self.budgets[cid]
        self._set_cameras()
        if not replacing:
            self.last.pop(cid, None)
        self.state.pop(cid, None)
        self.hold = True
        self.removing.append(_Removal(cid, p, ring, time.monotonic() + STOP_GRACE_S, fut))

    def replace(self, fut: Future, cam: CameraConfig) -> None:
        """Another source or setting: that camera alone restarts, continuing its timeline."""
        self.remove(Future(), cam.id, replacing=True)
        self.add(fut, cam, resume=True)

    def detect(self, fut: Future, cam: CameraConfig) -> None:
        """The camera's thresholds and loudness, live: its next window is judged by them."""
        if cam.id not in self.cams:
            raise KeyError(f"camera {cam.id} is not running here")
        self.cams[cam.id] = cam  # the same camera but for these settings (streamer.fleet.live_only)
        self._set_cameras()
        self.pipe.detect_settings(cam)
        fut.set_result({"id": cam.id, "thresholds": dict(cam.thresholds)})

    # ---- processes ending -------------------------------------------------------------------------
    def reap(self, force: bool = False) -> None:
        """Removed cameras: once the process has ended (or its grace is over, or `force`), free the ring."""
        now = time.monotonic()
        for r in list(self.removing):
            p = r.proc
            if p.exitcode is None and not force and now < r.deadline:
                continue
            procs.end([p])
            p.join(timeout=0)
            m.process_exited(p.pid)
            r.ring.close(unlink=True)
            self.removing.remove(r)
            log.info("camera %s: removed (ingest exit code %s, ring %s unlinked)", r.camera, p.exitcode, r.ring.shm.name)
            if not r.fut.done():
                r.fut.set_result({"id": r.camera, "pid": p.pid, "exitcode": p.exitcode, "ring": r.ring.shm.name})

    def restart(self, now: float) -> None:
        """Respawn each ingest process that died without finishing (it continues its camera's timeline);
        a camera over its RestartBudget is given up ("failed")."""
        for cid, p in list(self.procs.items()):
            if self.should_stop():
                break
            if self.state.get(cid) != "running" or p.exitcode in (None, 0):
                continue
            m.process_exited(p.pid)  # its gauges (source up) go, restarted or not
            if not self.budgets[cid].spend(now):
                log.error("camera %s: ingest died %d times in a minute; giving up on it", cid, len(self.budgets[cid].times))
                self.state[cid] = "failed"
                continue
            log.error("camera %s: ingest process died (exit code %s); restarting it", cid, p.exitcode)
            m.PROCESS_RESTARTS.labels(cid).inc()
            self._spawn(cid)

    def ended(self, cid: str) -> None:
        """A camera's source ended (the engine read its ring's end)."""
        self.state[cid] = "ended"

    def reshare(self) -> None:
        """Hand each live ingest process its camera's fresh ring (`pipe.rings`, after an engine restart):
        switched to before the process's next window."""
        for cid in [c for c, s in self.state.items() if s == "running"]:
            self.updates[cid].put(share(self.pipe.rings[cid]))

    def ask_stop(self) -> None:
        for ev in self.stops.values():
            ev.set()

    def stop(self) -> None:
        """Ask every ingest process to stop; terminate, then kill, those still running after STOP_GRACE_S;
        then free the removed cameras' rings."""
        self.ask_stop()
        ended = list(self.procs.values())
        deadline = time.monotonic() + STOP_GRACE_S
        for p in ended:
            p.join(timeout=max(deadline - time.monotonic(), 0))
        procs.end(ended)
        for p in ended:
            m.process_exited(p.pid)
        self.reap(force=True)
