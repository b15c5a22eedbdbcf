"""`streamer shard plan CONFIG --replicas N [--json]`: which replica runs each camera."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any


def cmd_plan(args: argparse.Namespace) -> int:
    from streamer import shard
    from streamer.config import load_config
    from streamer.errors import ConfigError

    try:
        cfg = load_config(args.file)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    replicas = cfg.shard.replicas if args.replicas is None else args.replicas
    if replicas < 1:
        print(f"--replicas: must be at least 1 (got {replicas})", file=sys.stderr)
        return 1
    plan = shard.plan([c.id for c in cfg.cameras], replicas)
    if args.json:
        print(json.dumps({"cameras": plan}))
        return 0
    width = max(len(c) for c in plan)
    for cam, i in plan.items():
        print(f"{cam:{width}}  {i}")
    counts = Counter(plan.values())
    print(f"{len(plan)} cameras on {replicas} replicas: " + ", ".join(f"{i}: {counts.get(i, 0)}" for i in range(replicas)),
          file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `shard plan` to the main CLI's subparsers."""
    p = subparsers.add_parser("shard", help="how cameras are split over replicas (rendezvous hashing)")
    acts = p.add_subparsers(dest="action", required=True)
    s = acts.add_parser("plan", help="print camera -> replica index")
    s.add_argument("file", help="config file")
    s.add_argument("--replicas", type=int, default=None, help="number of replicas (default: shard.replicas of the config)")
    s.add_argument("--json", action="store_true", help='{"cameras": {id: index}}')
    s.set_defaults(fn=cmd_plan)
    return p
