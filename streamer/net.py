"""Where things are reached: the Redis URL's environment variable and a free local TCP port."""

from __future__ import annotations

import socket

REDIS_URL_ENV = "STREAMER_REDIS_URL"  # overrides redis.url in the config; `streamer alerts` reads it too


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (nothing listens there once this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
