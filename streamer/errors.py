"""Exceptions of streamer. Each also inherits the matching built-in, and says if it is recoverable."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


class StreamerError(Exception):
    """Base of streamer's own errors."""


class ConfigError(StreamerError, ValueError):
    """The configuration is invalid. Not recoverable: fix the file."""


class SourceError(StreamerError, IOError):
    """A source could not be opened or read. Recoverable: the supervisor reopens it."""


class SourceTimeout(SourceError, TimeoutError):
    """A source did not answer within its open or read timeout. Recoverable."""


class HwaccelError(StreamerError, RuntimeError):
    """Hardware decoding was asked for but is not available here. Not recoverable: change the config."""


def redact(url: str) -> str:
    """`rtsp://user:secret@host/x` -> `rtsp://user:***@host/x`; anything else unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def redact_text(text: str) -> str:
    """Redact every URL password inside free text (log lines, error messages)."""
    return re.sub(r"(\w+://[^:/@\s]*):[^@/\s]*@", r"\1:***@", text)
