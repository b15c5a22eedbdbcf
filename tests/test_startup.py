"""One set of start-up rules (streamer/startup.py): `streamer check` and `streamer run` give the same
verdict, with the same lines, on the same config (real processes: the CLI's own functions in one
subprocess; the good config really runs, on the default model with ONNX Runtime)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from streamer.net import free_port

DRIVER = """
import contextlib, io, json, sys
from argparse import Namespace
from streamer import cli
out = {}
for f in sys.argv[1:]:
    verdicts = []
    for fn, args in ((cli.cmd_check, Namespace(file=f)),
                     (cli.cmd_run, Namespace(file=f, duration=20, print_alerts=False, summary_every=0))):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = fn(args)
        lines = [x for x in err.getvalue().splitlines() if x.startswith(f + ": ")]  # the verdict's lines
        verdicts.append([code, lines])
    out[f] = verdicts
print(json.dumps(out))
"""


def test_check_and_run_give_the_same_verdict(tmp_path, media_dir):
    clip = media_dir / "video_only.mp4"
    base = f"cameras: [{{id: a, url: {clip}, realtime: false}}]\nredis: {{spool_dir: {tmp_path / 'spool'}}}\n"
    (tmp_path / "garbage.npz").write_bytes(b"not a model")
    (tmp_path / "file").write_text("")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    configs = {
        "good": f"anomaly: {{enabled: false}}\nhttp: {{port: {free_port()}}}\n",
        "public": "http: {host: 0.0.0.0, port: 9}\n",
        "port": f"http: {{port: {taken.getsockname()[1]}}}\n",
        "classes": "http: {port: 0}\ndetect: {thresholds: {fihgt: 0.7}}\n",
        "window": "http: {port: 0}\nwindow: {seconds: 2.0}\n",
        "spool": f"http: {{port: 0}}\nredis: {{spool_dir: {tmp_path / 'file' / 'spool'}}}\n",
        "normality": f"http: {{port: 0}}\ncameras: [{{id: a, url: {clip}, normality: {tmp_path / 'garbage.npz'}}}]\n",
    }
    files = []
    for name, extra in configs.items():
        p = tmp_path / f"{name}.yaml"
        # later keys win: a config's own cameras/redis/http replace the base's
        doc = {**_yaml(base), **_yaml(extra)}
        p.write_text(json.dumps(doc))
        files.append(str(p))
    try:
        r = subprocess.run([sys.executable, "-c", DRIVER, *files], capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    expect = {"good": None, "public": ": http.token: http.host 0.0.0.0 is not a loopback address",
              "port": ": http.port: cannot serve HTTP", "classes": ": detect.thresholds.fihgt: unknown class",
              "window": ": window.seconds: 2 does not match", "spool": ": redis.spool_dir: cannot use",
              "normality": ": camera a: cannot use normality model"}
    for f in files:
        (check_code, check_lines), (run_code, run_lines) = got[f]
        name = Path(f).stem
        assert (check_code, check_lines) == (run_code, run_lines), (name, got[f])
        if expect[name] is None:
            assert check_code == 0 and check_lines == [], (name, got[f])
        else:
            assert check_code == 1 and len(check_lines) == 1 and expect[name] in check_lines[0], (name, got[f])


def _yaml(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)
