"""Sharding: the rendezvous plan (through the CLI, a separate process), the replica index, the config errors."""

import json
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from streamer import shard
from streamer.config import parse_config
from streamer.errors import ConfigError


def cameras(n):
    return [{"id": f"cam-{i:03d}", "url": f"rtsp://10.0.{i // 200}.{i % 200 + 1}/stream1"} for i in range(n)]


def plan_cli(config, replicas):
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "shard", "plan", str(config), "--replicas", str(replicas), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["cameras"]


def test_plan_of_120_cameras_moves_little_from_3_to_4_replicas_and_balances(tmp_path):
    config = tmp_path / "fleet.yaml"
    config.write_text(yaml.safe_dump({"cameras": cameras(120)}))
    three, four = plan_cli(config, 3), plan_cli(config, 4)
    assert set(three) == set(four) == {c["id"] for c in cameras(120)}
    assert three == shard.plan(three, 3)  # another process, the same plan: the hash is stable
    moved = [c for c in three if three[c] != four[c]]
    assert len(moved) <= 0.35 * 120, f"{len(moved)} of 120 cameras moved"
    assert all(four[c] == 3 for c in moved)  # a camera moves only to the new replica, never between old ones
    for plan, replicas in ((three, 3), (four, 4)):
        counts = Counter(plan.values())
        assert set(counts) == set(range(replicas))
        assert max(counts.values()) <= 1.4 * 120 / replicas, counts


def test_plan_text_output_and_bad_replicas(tmp_path):
    config = tmp_path / "fleet.yaml"
    config.write_text(yaml.safe_dump({"cameras": cameras(5), "shard": {"replicas": 2}}))
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "shard", "plan", str(config)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = dict(line.split() for line in r.stdout.splitlines())
    assert rows == {c: str(i) for c, i in shard.plan([c["id"] for c in cameras(5)], 2).items()}  # replicas from the config
    assert "5 cameras on 2 replicas" in r.stderr
    r = subprocess.run([sys.executable, "-m", "streamer.cli", "shard", "plan", str(config), "--replicas", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == "--replicas: must be at least 1 (got 0)"


def test_index_from_config_env_and_hostname(monkeypatch):
    data = {"cameras": cameras(12), "shard": {"replicas": 3}}
    monkeypatch.delenv("STREAMER_SHARD_INDEX", raising=False)
    cfg = parse_config(data)
    assert shard.index_of(cfg, "streamer-2") == 2
    assert shard.index_of(cfg, "streamer-1.streamer.video.svc.cluster.local") == 1
    with pytest.raises(ConfigError, match=r"^shard.index: not set.*'laptop'"):
        shard.index_of(cfg, "laptop")
    with pytest.raises(ConfigError, match=r"^shard.index: 7 from the hostname 'streamer-7' is not below shard.replicas \(3\)"):
        shard.index_of(cfg, "streamer-7")
    assert shard.index_of(parse_config({**data, "shard": {"replicas": 3, "index": 0}}), "streamer-2") == 0
    monkeypatch.setenv("STREAMER_SHARD_INDEX", "1")
    cfg = parse_config({**data, "shard": {"replicas": 3, "index": 0}})  # the environment overrides the file
    assert shard.index_of(cfg, "streamer-2") == 1
    mine = shard.local_config(cfg)
    assert [c.id for c in mine.cameras] == [c.id for c in cfg.cameras if shard.owner(c.id, 3) == 1] and mine.shard.index == 1
    with pytest.raises(ConfigError, match=r"shard.index: must be below shard.replicas \(1\)"):
        parse_config({"cameras": cameras(3)})  # an index for a fleet of one is a mistake
    monkeypatch.delenv("STREAMER_SHARD_INDEX")
    single = parse_config({"cameras": cameras(3)})
    assert shard.local_config(single, "anything").cameras == single.cameras


def test_every_camera_has_exactly_one_replica():
    ids = [c["id"] for c in cameras(50)]
    for replicas in (1, 2, 5):
        cfg = parse_config({"cameras": cameras(50), "shard": {"replicas": replicas}})
        got = [c.id for i in range(replicas) for c in shard.local_config(cfg, f"streamer-{i}").cameras]
        assert sorted(got) == sorted(ids)


@pytest.mark.parametrize("section, env, message", [
    ({"replicas": 3, "index": 3}, None, "shard.index: must be below shard.replicas (3) (got '3')"),
    ({"replicas": 0}, None, "shard.replicas: Input should be greater than or equal to 1"),
    ({"replicas": 2}, "two", "shard.index: Input should be a valid integer"),
    ({"replicas": 2, "size": 1}, None, "shard.size: Extra inputs are not permitted"),
])
def test_bad_shard_settings_are_one_line_errors_naming_the_key(monkeypatch, section, env, message):
    if env is None:
        monkeypatch.delenv("STREAMER_SHARD_INDEX", raising=False)
    else:
        monkeypatch.setenv("STREAMER_SHARD_INDEX", env)
    with pytest.raises(ConfigError) as e:
        parse_config({"cameras": cameras(2), "shard": section})
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and lines[1].strip().startswith(message), lines
