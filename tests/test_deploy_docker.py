"""deploy/docker: no Docker engine on the development machines, so what can be checked without one is:
the compose files parse, every file they mount or build from exists, ports, hosts and paths agree
with the streamer config and the other services' configs, and the GPU image's entry point does what
it says (run with a stand-in `streamer` on PATH that records its arguments)."""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from streamer.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "deploy" / "docker"


def compose(name="compose.yaml"):
    return yaml.safe_load((DOCKER / name).read_text())


def port_map(service):
    """container port -> host port of "[ip:]host:container" entries."""
    out = {}
    for p in service.get("ports", []):
        *_, host, container = str(p).split(":")
        out[int(container)] = int(host)
    return out


def mounts(service):
    """container path -> host path (bind mounts, resolved) or volume name."""
    out = {}
    for v in service.get("volumes", []):
        src, dst, *_ = v.split(":")
        out[dst] = (DOCKER / src).resolve() if src.startswith(".") else src
    return out


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.delenv("STREAMER_REDIS_URL", raising=False)
    monkeypatch.delenv("STREAMER_SHARD_INDEX", raising=False)
    return load_config(DOCKER / "config.yaml")


def test_compose_files_parse_and_everything_they_use_exists():
    base, gpu = compose(), compose("compose.gpu.yaml")
    assert set(base["services"]) == {"redis", "mediamtx", "streamer", "prometheus", "grafana"}
    assert set(gpu["services"]) <= set(base["services"])  # an override file: it adds no service
    for c, volumes in ((base, set(base.get("volumes", {}))), (gpu, set(base.get("volumes", {})) | set(gpu.get("volumes", {})))):
        for name, s in c["services"].items():
            for src in mounts(s).values():
                if isinstance(src, Path):
                    assert src.is_file(), f"{name}: mounts {src}, which does not exist"
                else:
                    assert src in volumes, f"{name}: volume {src} is not declared"
            if "build" in s:
                context = (DOCKER / s["build"]["context"]).resolve()
                assert context == ROOT and (context / s["build"]["dockerfile"]).is_file()
            assert "image" in s


def test_streamer_service_matches_its_config(cfg):
    s = compose()["services"]["streamer"]
    assert cfg.http.host == "0.0.0.0" and cfg.http.port in port_map(s)
    assert f"EXPOSE {cfg.http.port}" in (DOCKER / "Dockerfile.cpu").read_text()
    assert f"EXPOSE {cfg.http.port}" in (DOCKER / "Dockerfile.gpu").read_text()
    config_path = s["command"][1]
    assert s["command"][0] == "run" and mounts(s)[config_path] == DOCKER / "config.yaml"
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.gpu"):
        assert f'CMD ["run", "{config_path}"]' in (DOCKER / dockerfile).read_text()
    state = next(dst for dst, src in mounts(s).items() if src == "state")
    assert cfg.redis.spool_dir.startswith(state + "/") and cfg.anomaly.dir.startswith(state + "/")
    assert cfg.redis.url is None  # from the environment, as below
    redis_url = urlsplit(s["environment"]["STREAMER_REDIS_URL"])
    assert redis_url.hostname == "redis" and redis_url.port in port_map(compose()["services"]["redis"])
    assert "/readyz" in s["healthcheck"]["test"][-1] and f":{cfg.http.port}/" in s["healthcheck"]["test"][-1]


def test_the_camera_is_the_demo_clip_served_by_mediamtx(cfg):
    c = compose()["services"]
    (camera,) = cfg.cameras
    url = urlsplit(camera.url)
    assert url.scheme == "rtsp" and url.hostname == "mediamtx" and url.port in port_map(c["mediamtx"])
    m = yaml.safe_load((DOCKER / "mediamtx.yml").read_text())
    path = m["paths"][url.path.lstrip("/")]
    clip = re.search(r"-i (\S+)", path["runOnInit"]).group(1)
    assert mounts(c["mediamtx"])[clip] == ROOT / "streamer" / "assets" / "demo.mp4"
    assert "-stream_loop -1" in path["runOnInit"] and "-re " in path["runOnInit"]
    assert mounts(c["mediamtx"])["/mediamtx.yml"] == DOCKER / "mediamtx.yml"
    assert c["mediamtx"]["image"].endswith("-ffmpeg")  # runOnInit needs ffmpeg in the image


def test_prometheus_scrapes_streamer_and_grafana_has_the_dashboard(cfg):
    c = compose()["services"]
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    assert mounts(c["prometheus"])["/etc/prometheus/prometheus.yml"] == DOCKER / "prometheus.yml"
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"streamer:{cfg.http.port}"]
    g = mounts(c["grafana"])
    ds = yaml.safe_load(g["/etc/grafana/provisioning/datasources/streamer.yaml"].read_text())["datasources"][0]
    url = urlsplit(ds["url"])
    assert ds["type"] == "prometheus" and ds["isDefault"] and url.hostname == "prometheus" and url.port in port_map(c["prometheus"])
    provider = yaml.safe_load(g["/etc/grafana/provisioning/dashboards/streamer.yaml"].read_text())["providers"][0]
    dashboards = {dst: src for dst, src in g.items() if dst.startswith(provider["options"]["path"] + "/")}
    assert list(dashboards.values()) == [ROOT / "deploy" / "grafana" / "streamer.json"]
    board = json.loads((ROOT / "deploy" / "grafana" / "streamer.json").read_text())
    variable = next(v for v in board["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == ds["type"]  # the dashboard's datasource variable finds the provisioned one


def test_gpu_dockerfile_is_on_nvidias_tensorrt_container():
    text = (DOCKER / "Dockerfile.gpu").read_text()
    tag = re.search(r"^ARG TENSORRT_TAG=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"\d\d\.\d\d-py3", tag)  # NGC's tag scheme <yy.mm>-py3
    assert "FROM nvcr.io/nvidia/tensorrt:${TENSORRT_TAG}" in text
    assert 'pip install ".[gpu]"' in text
    entry = re.search(r'^ENTRYPOINT \["(\S+)"\]$', text, re.M).group(1)
    copied = dict(reversed(m.groups()) for m in re.finditer(r"^COPY (\S+) (\S+)$", text, re.M))
    assert (ROOT / copied[entry]).is_file()
    ignore = (ROOT / ".dockerignore").read_text().split()
    for src in copied.values():  # the build context leaves out all but what the images copy
        assert (ROOT / src).exists() and f"!{src}" in ignore, src
    gpu = compose("compose.gpu.yaml")["services"]["streamer"]
    assert gpu["build"]["dockerfile"] == "deploy/docker/Dockerfile.gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


@pytest.mark.parametrize("backend, builds", [("auto", True), ("tensorrt", True), ("onnxruntime", False)])
def test_gpu_entrypoint_builds_the_engine_then_runs(tmp_path, monkeypatch, backend, builds):
    log = tmp_path / "calls"
    stub = tmp_path / "bin" / "streamer"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"id": "a", "url": "rtsp://cam/x"}], "engine": {"backend": backend, "precision": "fp32"}}))
    env = {**os.environ, "PATH": f"{stub.parent}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    env.pop("STREAMER_REDIS_URL", None)
    script = str(DOCKER / "gpu-entrypoint.sh")
    subprocess.run(["sh", script, "run", str(config)], env=env, check=True, timeout=60)
    expected = ([f"engine build --config {config} --precision fp32"] if builds else []) + [f"run {config}"]
    assert log.read_text().splitlines() == expected
    log.unlink()
    subprocess.run(["sh", script, "alerts", "--follow"], env=env, check=True, timeout=60)
    assert log.read_text().splitlines() == ["alerts --follow"]
    config.write_text("cameras: []\n")
    r = subprocess.run(["sh", script, "run", str(config)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "cameras" in r.stderr  # a bad config stops it before anything runs
