"""A bounded on-disk queue of alerts that could not be delivered, replayed in order.

One JSON document per line in `<dir>/alerts.jsonl`, appended with fsync, so a crash or a restart of
streamer loses nothing the spool accepted. When it holds `max_alerts`, new alerts are refused (the
caller counts them) rather than silently overwriting older ones.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable


class Spool:
    def __init__(self, directory: str | Path, max_alerts: int = 100_000) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "alerts.jsonl"
        self.max_alerts = max_alerts
        self._lock = threading.Lock()
        self._count = self._count_lines()

    def _count_lines(self) -> int:
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:
            return sum(1 for line in f if line.strip())

    def __len__(self) -> int:
        return self._count

    def append(self, alert: dict[str, Any]) -> bool:
        """Store an alert; False when the spool is full (the alert is not stored)."""
        line = json.dumps(alert, separators=(",", ":")) + "\n"
        with self._lock:
            if self._count >= self.max_alerts:
                return False
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._count += 1
            return True

    def replay(self, deliver: Callable[[dict[str, Any]], None]) -> int:
        """Deliver spooled alerts oldest first; stops at the first failure (which propagates) keeping the rest."""
        with self._lock:
            if not self._count:
                return 0
            with open(self.path) as f:
                pending = [json.loads(line) for line in f if line.strip()]
            done = 0
            try:
                for alert in pending:
                    deliver(alert)
                    done += 1
            finally:
                self._rewrite(pending[done:])
            return done

    def _rewrite(self, rest: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for alert in rest:
                f.write(json.dumps(alert, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._count = len(rest)
