"""Events across restarts (real processes, the default model on ONNX Runtime, a real Redis):
a respawned ingest process continues its camera's timeline, so an event open across the restart ends
normally; an engine restart ends open events with reason "engine_restart" and the ingest process goes
on, handed the fresh ring."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import jsonschema

from streamer import procs
from streamer.cli import DEMO_CLIP
from streamer.config import parse_config
from streamer.outputs.reader import last as read_stream
from streamer.pipeline import Pipeline
from streamer.supervision import RestartBudget
from tests.outputs.schema import ALERT_SCHEMA


def cfg_for(redis_url: str, tmp_path: Path, url: str, **detect):
    return parse_config({
        "cameras": [{"id": "cam", "url": url, "realtime": True, "loop": True}],
        "redis": {"url": redis_url, "spool_dir": str(tmp_path / "spool")},
        "http": {"port": 0},
        "anomaly": {"enabled": False},
        "detect": detect,
    })


def ingest_pid(pipe: Pipeline) -> int:
    from multiprocessing import resource_tracker

    others = {pipe.engine.proc.pid, resource_tracker._resource_tracker._pid}
    for p in procs.children():
        if p not in others and b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes():
            return p
    raise AssertionError("no ingest process")


def run_until(pipe: Pipeline, seen: list, done, timeout: float) -> None:
    def watch():
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
        pipe.stop()

    threading.Thread(target=watch, daemon=True).start()


def test_a_respawned_ingest_process_continues_the_timeline_and_the_open_event_ends(redis_server, tmp_path):
    seen: list[dict] = []
    # a threshold the demo clip's fight crosses with any reasonable model (the default's own is set for
    # 1 false alert per hour, far above what this test needs)
    pipe = Pipeline(cfg_for(redis_server.url, tmp_path, str(DEMO_CLIP), thresholds={"fight": 0.75}), on_alert=seen.append)
    killed: dict = {}

    def kill_on_fight_start():
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            start = next((a for a in seen if a["event"] == "fight" and a["state"] == "start"), None)
            if start:
                killed["at"] = start["end"]
                os.kill(ingest_pid(pipe), signal.SIGKILL)
                return
            time.sleep(0.02)

    threading.Thread(target=kill_on_fight_start, daemon=True).start()
    after = lambda: [a for a in seen if "at" in killed and a["state"] == "start" and a["start"] > killed["at"]]  # noqa: E731
    run_until(pipe, seen, lambda: after() and any(a["event"] == "fight" and a["state"] == "end" for a in seen), 60)
    try:
        pipe.run()
    finally:
        pipe.close()
    assert "at" in killed, "no fight start to kill the ingest process on"
    ends = [a for a in seen if a["event"] == "fight" and a["state"] == "end"]
    assert ends, "the event open across the restart never ended"
    assert "reason" not in ends[0]  # ended by its cooldown, as any other
    assert after(), "no event after the restart: the timeline did not continue"
    starts = [a["start"] for a in seen if a["state"] == "start"]
    assert starts == sorted(starts)  # source time never went back
    for a in read_stream(redis_server.client(), "streamer:alerts", 1000):
        jsonschema.validate(a, ALERT_SCHEMA)


def test_an_engine_restart_ends_open_events_with_a_reason(redis_server, tmp_path, media_dir):
    seen: list[dict] = []
    pipe = Pipeline(cfg_for(redis_server.url, tmp_path, str(media_dir / "h264_aac.mp4"), thresholds={"fight": 0.0}),
                    on_alert=seen.append)

    pids: dict = {}

    def kill_engine_when_open():
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not seen:
            time.sleep(0.02)
        pids["ingest"], pids["engine"] = ingest_pid(pipe), pipe.engine.proc.pid
        os.kill(pids["engine"], signal.SIGKILL)

    threading.Thread(target=kill_engine_when_open, daemon=True).start()
    run_until(pipe, seen, lambda: len([a for a in seen if a["event"] == "fight" and a["state"] == "start"]) >= 2, 60)
    try:
        pipe.run()
    finally:
        pipe.close()
    fights = [a for a in seen if a["event"] == "fight"]
    assert [a["state"] for a in fights[:3]] == ["start", "end", "start"]
    assert fights[1]["reason"] == "engine_restart"
    # the timeline continued across the restart: later windows (overlapping the last one by a hop), not 0 again
    assert fights[2]["start"] > fights[0]["start"]
    assert pipe.engine.proc.pid != pids["engine"]  # a new engine ...
    assert pipe.pids["cam"] == pids["ingest"]  # ... fed by the same ingest process, on its new ring
    stored = {a["id"]: a for a in read_stream(redis_server.client(), "streamer:alerts", 1000)}
    jsonschema.validate(stored[fights[1]["id"]], ALERT_SCHEMA)
    assert stored[fights[1]["id"]]["reason"] == "engine_restart"
    start = stored[fights[0]["id"]]
    keys = start["evidence"]  # read from the camera's evidence ring for the start alert
    assert set(keys) == {"keyframe", "audio"}
    assert redis_server.client().get(keys["keyframe"])[:2] == b"\xff\xd8"
    assert "evidence" not in fights[1] or fights[1]["evidence"] == {}


def test_the_restart_budget_gives_up_on_the_sixth_restart_within_a_minute():
    budget = RestartBudget()
    assert all(budget.spend(t) for t in (0, 10, 20, 30, 40))
    assert not budget.spend(50)  # a sixth within one minute: give up
    assert budget.spend(70.5)  # 0 and 10 have left the minute: 20, 30, 40, 50, 70.5
