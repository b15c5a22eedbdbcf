"""A real Prometheus scrapes a running streamer; every PromQL expression of the Grafana dashboard returns data."""

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def dashboard_exprs():
    dash = json.loads((ROOT / "deploy" / "grafana" / "streamer.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


def test_dashboard_names_only_exported_metrics():
    from streamer.outputs import metrics as m

    exported = {metric._name for metric in vars(m).values() if hasattr(metric, "_name")}
    for expr in dashboard_exprs():
        for name in {w for w in expr.replace("(", " ").replace(")", " ").replace("[", " ").replace("{", " ").split() if w.startswith("streamer_")}:
            base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count").removesuffix("_total")
            assert base in exported or base.removesuffix("_total") in exported, f"{name} is not exported"


def test_every_dashboard_query_returns_data(tmp_path, redis_server, media_dir):
    metrics_port, prom_port = free_port(), free_port()
    cfg = tmp_path / "streamer.yaml"
    cfg.write_text(json.dumps({
        "cameras": [{"id": "cam1", "url": str(media_dir / "h264_aac.mp4"), "loop": True}],
        "redis": {"url": redis_server.url, "spool_dir": str(tmp_path / "spool"), "stats_interval": 2},
        "http": {"host": "127.0.0.1", "port": metrics_port},
        "detect": {"thresholds": {"fight": 0.0}},
    }))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: streamer, static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]}}]\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    streamer = subprocess.Popen([sys.executable, "-m", "streamer.cli", "run", str(cfg), "--duration", "40"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        missing = dashboard_exprs()
        deadline = time.monotonic() + 35
        while missing and time.monotonic() < deadline and streamer.poll() is None:
            time.sleep(2)
            try:
                missing = [e for e in missing if not query(prom_port, e)["data"]["result"]]
            except OSError:
                continue
        assert streamer.poll() is None, streamer.stderr.read()[-3000:]
        assert not missing, f"no data for: {missing}"
    finally:
        prom.terminate()
        streamer.terminate()
        prom.wait(timeout=10)
        streamer.wait(timeout=15)
