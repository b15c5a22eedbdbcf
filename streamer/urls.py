"""Which camera URLs streamer opens, and which FFmpeg protocols each may use: the one policy that config
validation, the HTTP API and the ingest opener apply.

- streams: rtsp://, rtsps://, http://, https://, with a host;
- microphones: mic:<device> (PortAudio, not FFmpeg);
- files: a path (or file://path) to a regular file, not under SYSTEM_DIRS once symlinks are resolved
  (no device nodes, /proc, /etc...). A file named in the config file may be anywhere else; one added
  through the API only under `http.media_roots` (none by default: the API adds streams only).

FFmpeg opens each with `protocol_whitelist` set for its scheme (PROTOCOLS), so an RTSP session, an
HTTP playlist or a local file cannot pull in another protocol (file:, concat:, subfile:, crypto:...)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from streamer.errors import redact

PROTOCOLS = {
    "rtsp": "rtsp,rtp,udp,tcp,tls",
    "rtsps": "rtsp,rtp,udp,tcp,tls",
    "http": "http,https,tcp,tls",
    "https": "http,https,tcp,tls",
    "file": "file",
}
STREAM_SCHEMES = tuple(s for s in PROTOCOLS if s != "file")
SYSTEM_DIRS = ("/boot", "/dev", "/etc", "/proc", "/root", "/run", "/sys", "/var/lib", "/var/log", "/var/run")


class NotFound(ValueError):
    """The file is not there (now): for the opener, a source error like any other, not a policy refusal."""


def is_stream(url: str) -> bool:
    """A network stream (scheme://...), not a file (a path or file://) or a microphone."""
    return "://" in url and not url.startswith("file://")


def is_mic(url: str) -> bool:
    return url.startswith("mic:")


def is_live(url: str) -> bool:
    """A live source (a stream or a microphone: reconnected when lost, never paced), not a file."""
    return is_stream(url) or is_mic(url)


def _under(path: Path, root: str | Path) -> bool:
    return path.is_relative_to(Path(root).expanduser().resolve())


def check(url: str, media_roots: Sequence[str] | None = None) -> str:
    """`url` as it is to be opened, or ValueError saying why not (the URL redacted). `media_roots`
    None: the config file's rule (a file anywhere outside SYSTEM_DIRS); a list: the API's (files only
    under one of these directories)."""
    if is_mic(url):
        return url
    if "\x00" in url:
        raise ValueError(f"a NUL character in {redact(url)!r}")
    if is_stream(url):
        _check_stream(url)
        return url
    path = Path(url.removeprefix("file://")).expanduser()
    try:
        real = path.resolve()
        system = next((d for d in SYSTEM_DIRS if _under(real, d)), None)
        if system:
            raise ValueError(f"{path}: files under {system} are never sources")
        if not real.exists():
            raise NotFound(f"file not found: {path}")
        if not real.is_file():
            raise ValueError(f"{path}: not a regular file")
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
        raise ValueError(f"{path}: cannot be used as a file ({getattr(e, 'strerror', None) or e})") from None
    if media_roots is not None and not any(_under(real, r) for r in media_roots):
        where = f"under http.media_roots ({', '.join(media_roots)})" if media_roots else "(http.media_roots is empty)"
        raise ValueError(f"{path}: the API adds files only {where}")
    return str(path)


def check_file_under(path: str, roots: Sequence[str], what: str) -> str:
    """`path` if it is under one of `roots` (symlinks resolved), else ValueError: the API names files it
    reads (normality models) only there."""
    try:
        real = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path!r}: cannot be used as a file ({e})") from None
    if not any(_under(real, r) for r in roots):
        raise ValueError(f"{path}: the API reads {what} only under {', '.join(roots)}")
    return path


def _check_stream(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number or out of range raises here)
    except ValueError as e:
        raise ValueError(f"not a valid URL: {redact(url)} ({e})") from None
    if parts.scheme.lower() not in STREAM_SCHEMES:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {redact(url)} (use one of "
                         f"{', '.join(STREAM_SCHEMES)}, mic:<device> or a file path)")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {redact(url)}")


def open_args(url: str) -> tuple[str, dict[str, str]]:
    """What av.open gets for a URL that passed `check`: the target (a file as file:<absolute path>, so
    no prefix of its name is read as a protocol) and the options that fix its protocols (RTSP over TCP)."""
    if is_stream(url):
        scheme = urlsplit(url).scheme.lower()
        options = {"protocol_whitelist": PROTOCOLS[scheme]}
        if scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = "tcp"
        return url, options
    return "file:" + os.path.abspath(Path(url.removeprefix("file://")).expanduser()), {"protocol_whitelist": PROTOCOLS["file"]}
