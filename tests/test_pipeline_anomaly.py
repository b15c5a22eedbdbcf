"""Per-camera normality (anomaly) alerts in the live pipeline: default model on ONNX Runtime, real Redis,
clips made with PyAV (tests/media.py make_street: figures walking along a street; in the odd clip one more
crosses it five times as fast)."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from engines.spec import DEFAULT_MODEL, load_spec
from streamer.config import parse_config
from streamer.detect.anomaly import AnomalyScorer
from streamer.detect.normality import NormalityModel, camera_path
from streamer.errors import ConfigError
from streamer.eval_cli import main as eval_cli
from streamer.outputs.reader import last as read_stream
from streamer.pipeline import Pipeline
from tests.media import make_scene, make_street
from tests.outputs.schema import ALERT_SCHEMA

FAST_ROW = 4  # 7x7 grid row the fast figure crosses (its middle at 0.68 of the picture height)


def config(redis_url: str, tmp_path, cameras: list[dict], **anomaly) -> dict:
    return {
        "cameras": [{"realtime": False, **c} for c in cameras],
        "redis": {"url": redis_url, "spool_dir": str(tmp_path / "spool")},
        "http": {"port": 0},
        "anomaly": {"dir": str(tmp_path / "normality"), **anomaly},
    }


def run(cfg: dict) -> tuple[Pipeline, list[dict]]:
    pipe = Pipeline(parse_config(cfg))
    try:
        pipe.run(duration=60)  # ends when every file has ended
    finally:
        pipe.close()
    return pipe, read_stream(redis.Redis.from_url(cfg["redis"]["url"]), "streamer:alerts", 1000)


def anomalies(alerts: list[dict], camera: str) -> list[dict]:
    return [a for a in alerts if a["camera"] == camera and a["event"] == "anomaly"]


def test_learned_normal_alerts_on_the_fast_mover_only(redis_server, tmp_path, capsys):
    normal = make_street(tmp_path / "normal.mp4", seconds=20, seed=1)
    calm = make_street(tmp_path / "calm.mp4", seconds=12, seed=2)  # the same street, other noise
    odd = make_street(tmp_path / "odd.mp4", seconds=12, fast_at=(5.0, 8.0), seed=3)
    model = tmp_path / "street.npz"
    assert eval_cli(["learn-normal", "--camera", "street", "--from", str(normal), "--out-file", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["windows"] == 39 and info["objects"] > 100
    nm = NormalityModel.load(model)

    cfg = config(redis_server.url, tmp_path, [{"id": "an-odd", "url": str(odd), "normality": str(model)},
                                          {"id": "an-calm", "url": str(calm), "normality": str(model)}])
    pipe, alerts = run(cfg)
    assert pipe.tracker.threshold("an-odd", "anomaly") == nm.threshold
    assert REGISTRY.get_sample_value("streamer_alerts_total", {"camera": "an-calm", "event": "anomaly"}) == 0.0
    assert REGISTRY.get_sample_value("streamer_normality_learning_progress", {"camera": "an-calm"}) == 1.0
    for cid in ("an-odd", "an-calm"):  # every window's objects came beside the engine in time (window_objects)
        assert REGISTRY.get_sample_value("streamer_objects_missed_total", {"camera": cid}) == 0.0

    # normal footage: no anomaly (other classes may alert as they always did)
    assert anomalies(alerts, "an-calm") == []
    odd_alerts = anomalies(alerts, "an-odd")
    starts = [a for a in odd_alerts if a["state"] == "start"]
    assert starts and all(4.0 <= a["start"] < 8.0 for a in starts)  # windows that see the fast mover
    for a in odd_alerts:
        jsonschema.validate(a, ALERT_SCHEMA)
        assert a["anomaly_score"] >= nm.threshold and 0.5 <= a["score"] < 1.0
    start = starts[0]
    assert start["anomaly_cell"]["grid"] == 7 and start["anomaly_cell"]["row"] == FAST_ROW
    assert start["anomaly_score"] > 2 * nm.threshold
    assert any(a["state"] == "end" and "anomaly_cell" not in a for a in odd_alerts)
    # other events keep a null anomaly_score
    assert all(a["anomaly_score"] is None for a in alerts if a["event"] != "anomaly")


def test_learning_period_saves_the_model_then_scores(redis_server, tmp_path):
    clip = make_street(tmp_path / "cam.mp4", seconds=14, fast_at=(10.0, 13.0))
    cfg = config(redis_server.url, tmp_path, [{"id": "an-learn", "url": str(clip)}], learn_minutes=0.1, far=0.02)
    path = camera_path(tmp_path / "normality", "an-learn")
    assert not path.exists()
    pipe, alerts = run(cfg)

    nm = NormalityModel.load(path)  # 6 s of footage: 12 windows at hop 0.5, ending by 6.5 s
    assert nm.windows == 12 and nm.far == 0.02 and nm.camera == "an-learn"  # no window's objects lost
    assert REGISTRY.get_sample_value("streamer_objects_missed_total", {"camera": "an-learn"}) == 0.0
    assert pipe.anomaly.progress("an-learn") == 1.0 and "an-learn" in pipe.anomaly.models
    assert REGISTRY.get_sample_value("streamer_normality_learning_progress", {"camera": "an-learn"}) == 1.0
    found = anomalies(alerts, "an-learn")
    assert found and all(a["start"] >= 6.0 for a in found)  # nothing scored while learning
    assert max(a["anomaly_score"] for a in found) > 2 * nm.threshold  # the fast mover

    # the next start loads the saved model instead of learning again; the camera's thresholds still win
    again = Pipeline(parse_config(cfg))
    try:
        assert "an-learn" in again.anomaly.models and not again.anomaly.learners
        assert again.anomaly.models["an-learn"].threshold == pytest.approx(nm.threshold)
    finally:
        again.close()
    cfg["cameras"][0]["thresholds"] = {"anomaly": 99.0}
    override = Pipeline(parse_config(cfg))
    try:
        assert override.tracker.threshold("an-learn", "anomaly") == 99.0
    finally:
        override.close()


def test_bad_normality_file_is_a_config_error_at_start(tmp_path):
    url = str(make_scene(tmp_path / "cam.mp4", seconds=1))
    nowhere = "redis://127.0.0.1:1/0"  # the error comes before any connection
    bad = tmp_path / "bad.npz"
    for content in (b"", b"not a model", b"PK\x03\x04truncated"):
        bad.write_bytes(content)
        with pytest.raises(ConfigError) as e:
            Pipeline(parse_config(config(nowhere, tmp_path, [{"id": "an-bad", "url": url, "normality": str(bad)}])))
        assert "camera an-bad" in str(e.value) and str(bad) in str(e.value)
    # a model of the older kind (grid statistics of the engine's embedding), found in anomaly.dir: refused,
    # in one line that says how to learn it again
    path = camera_path(tmp_path / "normality", "an-other")
    path.parent.mkdir(parents=True)
    meta = {"format": "streamer.normality/1", "camera": "an-other", "layout": None, "features": [], "threshold": 1.0,
            "far": 0.01, "windows": 40}
    np.savez(path, meta=np.array(json.dumps(meta)), mean=np.zeros((1, 8)), scale=np.ones((1, 8)), bank=np.zeros((5, 1, 8)))
    with pytest.raises(ConfigError, match="camera an-other: .*older kind.*streamer learn-normal --camera") as e:
        Pipeline(parse_config(config(nowhere, tmp_path, [{"id": "an-other", "url": url}], learn_minutes=0)))
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    # with a learning period, a file the pipeline learned itself is moved aside and learned anew
    scorer = AnomalyScorer(parse_config(config(nowhere, tmp_path, [{"id": "an-other", "url": url}])),
                           load_spec(DEFAULT_MODEL).frames)
    assert "an-other" in scorer.learners and not path.exists()
    assert path.with_name("an-other.stale.npz").exists()


def test_anomaly_config(tmp_path):
    url = str(make_scene(tmp_path / "cam.mp4", seconds=1))
    cfg = parse_config({"cameras": [{"id": "a", "url": url}]})
    assert cfg.anomaly.enabled and cfg.anomaly.learn_minutes == 10 and cfg.anomaly.far == 0.001
    assert cfg.anomaly.dir == "~/.local/state/streamer/normality" and cfg.cameras[0].normality is None
    with pytest.raises(ConfigError, match=r"cameras\.0\.normality: normality model file not found"):
        parse_config({"cameras": [{"id": "a", "url": url, "normality": str(tmp_path / "none.npz")}]})
    with pytest.raises(ConfigError, match="a learning period needs at least 10"):
        parse_config({"cameras": [{"id": "a", "url": url}], "anomaly": {"learn_minutes": 0.05}})
    with pytest.raises(ConfigError, match=r"anomaly\.far"):
        parse_config({"cameras": [{"id": "a", "url": url}], "anomaly": {"far": 1.5}})
    with pytest.raises(ConfigError, match=r"anomaly\.threshold"):
        parse_config({"cameras": [{"id": "a", "url": url}], "anomaly": {"threshold": 3}})
    off = parse_config({"cameras": [{"id": "a", "url": url}], "anomaly": {"enabled": False, "learn_minutes": 0.01}})
    assert not off.anomaly.enabled  # a learning period too short to matter when anomaly is off
