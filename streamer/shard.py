"""Sharding cameras over replicas by rendezvous (highest random weight) hashing.

Each camera goes to the replica with the highest weight sha256(camera id, replica index): every
process computes the same plan from the ids alone, and going from N to N+1 replicas moves only the
cameras whose new top weight is the new replica's, about 1/(N+1) of them.

A replica's index is `shard.index` (or $STREAMER_SHARD_INDEX, applied by the config loader), else
the ordinal at the end of the hostname (a StatefulSet pod `name-I`).
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable

from streamer.config import Config
from streamer.errors import ConfigError

ORDINAL = re.compile(r"-(\d+)$")


def weight(camera: str, replica: int) -> int:
    digest = hashlib.sha256(f"{camera}\x00{replica}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(camera: str, replicas: int) -> int:
    """The replica (0..replicas-1) that runs this camera."""
    return max(range(replicas), key=lambda r: weight(camera, r))


def plan(cameras: Iterable[str], replicas: int) -> dict[str, int]:
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1 (got {replicas})")
    return {c: owner(c, replicas) for c in cameras}


def index_of(cfg: Config, hostname: str | None = None) -> int:
    """This replica's index: shard.index, else the hostname's ordinal; 0 when there is one replica."""
    s = cfg.shard
    if s.index is not None:
        return s.index
    if s.replicas == 1:
        return 0
    host = hostname if hostname is not None else socket.gethostname()
    found = ORDINAL.search(host.split(".")[0])
    if not found:
        raise ConfigError(f"shard.index: not set, $STREAMER_SHARD_INDEX not set, and the hostname {host!r} "
                          f"has no -<ordinal> (as a StatefulSet pod's has)")
    i = int(found.group(1))
    if i >= s.replicas:
        raise ConfigError(f"shard.index: {i} from the hostname {host!r} is not below shard.replicas ({s.replicas})")
    return i


def local_config(cfg: Config, hostname: str | None = None) -> Config:
    """The config with only this replica's cameras (unchanged with one replica)."""
    if cfg.shard.replicas == 1:
        return cfg
    i = index_of(cfg, hostname)
    mine = [c for c in cfg.cameras if owner(c.id, cfg.shard.replicas) == i]
    return cfg.model_copy(update={"cameras": mine, "shard": cfg.shard.model_copy(update={"index": i})})
