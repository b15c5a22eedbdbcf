"""Config validation: errors name the key path, the YAML line and the bad value, passwords hidden."""

import subprocess
import sys

import pytest

from streamer.config import REDIS_URL_ENV, load_config
from streamer.errors import ConfigError, redact, redact_text


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_minimal_config_gets_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "cameras:\n  - id: lobby\n    url: rtsp://10.0.0.5/stream1\n"))
    assert cfg.redis.url is None and cfg.redis.stream == "streamer:alerts"
    assert cfg.window.seconds == 1.0 and cfg.window.hop == 0.5 and cfg.engine.backend == "auto"


def test_unknown_key_names_path_and_line(tmp_path):
    p = write(tmp_path, "cameras:\n  - id: lobby\n    url: rtsp://h/s\n    colour: red\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "cameras.0.colour (line 4)" in str(e.value) and "'red'" in str(e.value)


def test_older_metrics_section_is_read_as_http_with_one_warning(tmp_path, caplog):
    cam = "cameras:\n  - id: lobby\n    url: rtsp://h/s\n"
    path = write(tmp_path, cam + "metrics: {host: 0.0.0.0, port: 9200}\n")
    for _ in range(3):  # read again (the API and SIGHUP do, on every change): warned once
        cfg = load_config(path)
    assert (cfg.http.host, cfg.http.port) == ("0.0.0.0", 9200)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "`metrics:` is deprecated" in warned[0] and "`http:`" in warned[0], warned
    assert "\n" not in warned[0]
    caplog.clear()
    cfg = load_config(write(tmp_path, cam + "metrics: {port: 9200}\nhttp: {port: 9300}\n"))  # both: http wins
    assert cfg.http.port == 9300
    assert [r.getMessage() for r in caplog.records if "`metrics:`" in r.getMessage()], caplog.records


def test_bad_url_is_redacted(tmp_path):
    p = write(tmp_path, "cameras:\n  - id: lobby\n    url: ftp://admin:hunter2@cam/x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "cameras.0.url" in msg and "unsupported URL scheme 'ftp'" in msg
    assert "hunter2" not in msg and "admin:***@cam" in msg


def test_missing_file_and_bad_redis_url(tmp_path):
    p = write(tmp_path, "cameras:\n  - id: a\n    url: /no/such.mp4\nredis:\n  url: http://x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "cameras.0.url (line 3): file not found: /no/such.mp4" in str(e.value)
    assert "redis.url (line 5): not a Redis URL" in str(e.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_engine_device(tmp_path, device):
    cfg = load_config(write(tmp_path, f"cameras:\n  - {{id: a, url: rtsp://h/1}}\nengine:\n  device: {device!r}\n"))
    assert cfg.engine.device == device and cfg.engine.cuda_graphs is True


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda0", "CPU"])
def test_bad_engine_device_names_the_key(tmp_path, device):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"cameras:\n  - {{id: a, url: rtsp://h/1}}\nengine:\n  device: {device!r}\n"))
    assert f"engine.device (line 4): expected auto, cpu, cuda or cuda:N (a GPU's index) (got {device!r})" in str(e.value)


def test_duplicate_camera_ids(tmp_path):
    p = write(tmp_path, "cameras:\n  - {id: a, url: rtsp://h/1}\n  - {id: a, url: rtsp://h/2}\n")
    with pytest.raises(ConfigError, match="unique"):
        load_config(p)


def test_env_overrides_redis_url(tmp_path, monkeypatch):
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:7000/1")
    cfg = load_config(write(tmp_path, "cameras:\n  - {id: a, url: rtsp://h/1}\n"))
    assert cfg.redis.url == "redis://127.0.0.1:7000/1"


def test_redaction():
    assert redact("rtsp://admin:p@ss@10.0.0.1:554/s") == "rtsp://admin:***@10.0.0.1:554/s"
    assert redact("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("/tmp/a.mp4") == "/tmp/a.mp4"
    assert redact_text("x rtsp://u:pw@h/x y") == "x rtsp://u:***@h/x y"


@pytest.mark.parametrize(
    "text,code,needle",
    [
        ("cameras:\n  - {id: a, url: rtsp://h/1}\n", 0, "ok (1 camera(s))"),
        ("cameras:\n  - {id: a, url: rtsp://u:secret@h/1, fps: 3}\n", 1, "cameras.0.fps"),
        ("cameras: [\n", 1, "not valid YAML"),
        ("cameras:\n  - {id: a, url: rtsp://h/1}\ndetect: {thresholds: {fihgt: 0.7}}\n", 1,
         "detect.thresholds.fihgt: unknown class"),
        ("cameras:\n  - {id: a, url: rtsp://h/1, thresholds: {fight: 0.7, anomaly: 2, gunshot: 0.5}}\n", 1,
         "cameras[0].thresholds (a).gunshot: unknown class"),
        ("cameras:\n  - {id: a, url: rtsp://h/1, thresholds: {fight: 0.7, anomaly: 2}}\n", 0, "ok (1 camera(s))"),
    ],
)
def test_streamer_check_exit_codes(tmp_path, text, code, needle):
    p = write(tmp_path, text)
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "check", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert needle in r.stdout + r.stderr
    assert "secret" not in r.stdout + r.stderr


def test_streamer_check_missing_file(tmp_path):
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "check", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot read" in r.stderr


def test_engine_device_rule_is_the_runtimes():
    """engine.device is checked in the config (which imports no stage) by the rule the runtime applies."""
    import re

    from engines.runtime.select import DEVICE_PATTERN
    from streamer.config import parse_config

    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "gpu", "cuda:", "CUDA", "cuda:x", "cpu ", ""):
        try:
            parse_config({"cameras": [{"id": "a", "url": "rtsp://h/s"}], "engine": {"device": device}})
            accepted = True
        except ConfigError:
            accepted = False
        assert accepted == bool(re.fullmatch(DEVICE_PATTERN, device)), device
