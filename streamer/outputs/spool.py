"""A bounded on-disk queue of alerts that could not be delivered, replayed in order.

One JSON document per line in `<dir>/alerts.jsonl`, appended with fsync, so a crash or a restart of
streamer loses nothing the spool accepted. When it holds `max_alerts`, new alerts are refused (the
caller counts them) rather than silently overwriting older ones. An alert already in the spool (same
id) is not stored twice. Order: alerts carry `_seq` (when they were accepted, set by the sink); the
replay sends them by `_seq`, so an alert spooled late (its send failed after newer ones were
spooled) still goes out in its place. Appends never wait for a replay's network calls.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable

from streamer.errors import ConfigError

_ID = re.compile(r'"id":"([^"]+)"')


def _id_of(line: str) -> str | None:
    mt = _ID.search(line, 0, 400)
    return mt.group(1) if mt else None


def usable_dir(directory: str | Path, setting: str = "redis.spool_dir") -> Path:
    """The spool directory, made if missing and tried with a write; a ConfigError naming `setting` if not."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{setting}: cannot use {str(path)!r} as the alert spool: "
                          f"{e.strerror or e.__class__.__name__}") from None
    return path


class Spool:
    def __init__(self, directory: str | Path, max_alerts: int = 100_000, setting: str = "redis.spool_dir") -> None:
        self.dir = usable_dir(directory, setting)
        self.path = self.dir / "alerts.jsonl"
        self.max_alerts = max_alerts
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._count = 0
        if self.path.exists():
            with open(self.path) as f:
                for line in f:
                    if line.strip():
                        self._count += 1
                        i = _id_of(line)
                        if i:
                            self._ids.add(i)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, alert_id: str) -> bool:
        return alert_id in self._ids

    def append(self, alert: dict[str, Any]) -> bool:
        """Store an alert; False when the spool is full (the alert is not stored). An alert whose id is
        already here is not stored again (True)."""
        line = json.dumps(alert, separators=(",", ":")) + "\n"
        with self._lock:
            if alert.get("id") in self._ids:
                return True
            if self._count >= self.max_alerts:
                return False
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._count += 1
            if alert.get("id"):
                self._ids.add(alert["id"])
            return True

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def replay(self, deliver: Callable[[dict[str, Any]], None]) -> int:
        """Deliver spooled alerts oldest first (by `_seq`, then file order); stops at the first failure
        (which propagates) keeping the rest. The lock is held only to read and to rewrite the file, not
        while `deliver` talks to the network, so alerts can be spooled meanwhile."""
        with self._lock:
            if not self._count:
                return 0
            pending = sorted(self._read(), key=lambda a: a.get("_seq", 0))
        done: set[str] = set()
        try:
            for alert in pending:
                deliver(alert)
                done.add(alert["id"])
        finally:
            if done:
                with self._lock:
                    self._rewrite([a for a in self._read() if a.get("id") not in done])
        return len(done)

    def _rewrite(self, rest: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for alert in rest:
                f.write(json.dumps(alert, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._count = len(rest)
        self._ids = {a["id"] for a in rest if a.get("id")}
