"""Exceptions of streamer, and the one redaction function every message goes through.

One hierarchy: `StreamerError` is the root; each subclass also inherits the matching built-in (so
`except ValueError` still catches a ConfigError) and says whether it is recoverable (`recoverable`:
True when streamer retries or restarts by itself, False when a person must change something).
The CLI prints any StreamerError as one line and exits 1.

Redaction: `redact(url)` hides URL userinfo passwords and credential-looking query parameters;
`redact_text(text)` does it for every URL inside free text (log lines, FFmpeg's messages, errors);
`RedactingFilter` applies it to every log record of a process.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

from engines.errors import StreamerError  # the root lives in the lowest layer (engines/)


class ConfigError(StreamerError, ValueError):
    """The configuration is invalid. Not recoverable: fix the file."""


class SourceError(StreamerError, IOError):
    """A source could not be opened or read. Recoverable: the supervisor reopens it."""

    recoverable = True


class SourceTimeout(SourceError, TimeoutError):
    """A source did not answer within its open or read timeout. Recoverable."""


class HwaccelError(StreamerError, RuntimeError):
    """Hardware decoding was asked for but is not available here. Not recoverable: change the config."""


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while streamer was starting. Not an error (so not a StreamerError, and
    not caught by `except Exception`): it unwinds the start-up and the CLI stops cleanly, exit 0."""


# ---- redaction ------------------------------------------------------------------------------------
MASK = "***"
# query parameter names that carry credentials (compared lower-case, also as a suffix: api_key, x-auth-token)
SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "user", "username",
                 "login", "credential", "credentials", "signature", "sig", "session", "sessionid", "access_token")
_SECRET_NAME = re.compile(r"(?:^|[_\-.])(?:" + "|".join(sorted(map(re.escape, SECRET_PARAMS), key=len, reverse=True)) + r")$", re.I)
_QUERY_PAIR = re.compile(r"(?P<sep>^|[?&;])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@]*):(?P<pw>[^@]*)@")


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.strip()))


def _redact_query(query: str) -> str:
    def sub(mt: re.Match) -> str:
        if is_secret_param(mt["name"]) and mt["value"]:
            return f"{mt['sep']}{mt['name']}={MASK}"
        return mt.group(0)

    return _QUERY_PAIR.sub(sub, query)


def redact(url: str) -> str:
    """A URL with its secrets masked: `rtsp://user:secret@host/x?token=abc&ch=1` ->
    `rtsp://user:***@host/x?token=***&ch=1`. Userinfo passwords and credential-looking query
    parameters (password, pass, pwd, token, key, auth, user, username, secret...) are masked;
    anything that is not a URL is returned unchanged."""
    if not isinstance(url, str) or "://" not in url and "?" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme and not parts.query:
        out = _USERINFO.sub(lambda mt: f"{mt['scheme']}{mt['user']}:{MASK}@", url)
        if "?" in out:
            head, _, tail = out.partition("?")
            out = f"{head}?{_redact_query(tail)}"
        return out
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{host}"
    query = _redact_query(parts.query) if parts.query else parts.query
    # parameters some cameras take in the path (;password=...) or the fragment
    path = _redact_query(parts.path) if "=" in parts.path else parts.path
    fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (netloc, query, path, fragment) == (parts.netloc, parts.query, parts.path, parts.fragment):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path, fragment=fragment))


def redact_text(text: str) -> str:
    """Redact every URL inside free text (log lines, error messages, FFmpeg's warnings)."""
    if not isinstance(text, str) or "://" not in text and "=" not in text:
        return text
    def one(mt: re.Match) -> str:
        url = mt.group(0)
        core = url.rstrip(",.:)]}'")
        return redact(core) + url[len(core):]

    out = _URL_IN_TEXT.sub(one, text)
    # a query string printed without its URL (FFmpeg sometimes logs just the request line)
    return re.sub(r"(?<=[?&;])([^=&;#\s?]+)=(?!\*\*\*)([^&;#\s,)\]'\"]+)",
                  lambda mt: f"{mt[1]}={MASK}" if is_secret_param(mt[1]) else mt.group(0), out)


class RedactingFilter(logging.Filter):
    """Masks credentials in every log record (message and arguments) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = redact_text(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction() -> None:
    """Attach RedactingFilter to every handler of the root logger (call after logging.basicConfig)."""
    for h in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())
