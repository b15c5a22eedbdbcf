"""The camera URL policy (streamer/urls.py): which URLs the config accepts, and that FFmpeg really opens
each with its scheme's protocol whitelist (a real HTTP server, real HLS playlists, real decoding)."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import threading

import av
import av.logging
import pytest

from streamer import urls
from streamer.config import load_config
from streamer.errors import ConfigError, SourceError
from streamer.ingest.opening import SourceOptions, open_container
from tests.media import make_clip


def config_error(tmp_path, url: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(f"cameras:\n  - id: ok\n    url: rtsp://h/1\n  - id: bad\n    url: '{url}'\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith("  cameras.1.url (line 5): "), lines
    return lines[1]


@pytest.mark.parametrize("url,says", [
    ("/etc/shadow", "files under /etc are never sources"),
    ("file:///etc/passwd", "files under /etc are never sources"),
    ("/dev/zero", "files under /dev are never sources"),
    ("/proc/self/environ", "files under /proc are never sources"),
    ("ftp://admin:hunter2@cam/x", "unsupported URL scheme 'ftp'"),
    ("rtmp://cam/live", "unsupported URL scheme 'rtmp'"),
    ("concat:/a.mp4|/b.mp4", "file not found"),
    ("rtsp://u:hunter2@[::1/x", "not a valid URL"),
    ("rtsp://u:hunter2@cam:99999/x", "not a valid URL"),
    ("x" * 5000, "cannot be used as a file"),
])
def test_refused_urls_are_config_errors_naming_the_key(tmp_path, url, says):
    line = config_error(tmp_path, url)
    assert says in line and "hunter2" not in line


def test_a_symlink_into_a_system_dir_a_fifo_and_a_directory_are_refused(tmp_path):
    (tmp_path / "cam.mp4").symlink_to("/etc/hostname")
    assert "files under /etc are never sources" in config_error(tmp_path, str(tmp_path / "cam.mp4"))
    os.mkfifo(tmp_path / "pipe.mp4")
    assert "not a regular file" in config_error(tmp_path, str(tmp_path / "pipe.mp4"))
    assert "not a regular file" in config_error(tmp_path, str(tmp_path))


def test_the_api_rule_takes_files_only_under_media_roots(tmp_path):
    clip = tmp_path / "media" / "a.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"x")
    assert urls.check(str(clip)) == str(clip)  # the config file's rule: anywhere outside the system dirs
    assert urls.check(f"file://{clip}", [str(clip.parent)]) == str(clip)
    with pytest.raises(ValueError, match=r"only \(http.media_roots is empty\)"):
        urls.check(str(clip), [])
    with pytest.raises(ValueError, match="only under http.media_roots"):
        urls.check(str(tmp_path / "media" / ".." / "media" / "a.mp4"), [str(tmp_path / "other")])
    assert urls.check("rtsp://h/x", []) == "rtsp://h/x" and urls.check("mic:1", []) == "mic:1"


@pytest.mark.parametrize("url,live", [
    ("rtsp://h/x", True), ("rtsps://h/x", True), ("https://h/x.m3u8", True), ("mic:default", True),
    ("/media/a.mp4", False), ("file:///media/a.mp4", False), ("a.mp4", False),
])
def test_one_test_tells_a_live_source_from_a_file(url, live):
    assert urls.is_live(url) is live
    assert urls.is_stream(url) is (live and not url.startswith("mic:"))


def test_rtsp_is_opened_over_tcp_and_other_schemes_are_not_told_to(tmp_path):
    assert urls.open_args("rtsp://h/x")[1] == {"protocol_whitelist": urls.PROTOCOLS["rtsp"], "rtsp_transport": "tcp"}
    assert urls.open_args("RTSPS://h/x")[1]["rtsp_transport"] == "tcp"
    assert "rtsp_transport" not in urls.open_args("http://h/x.m3u8")[1]
    assert "rtsp_transport" not in urls.open_args(str(tmp_path / "a.mp4"))[1]


class _Server:
    """A real HTTP server over a directory, counting the requests it answers."""

    def __init__(self, root) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *_a) -> None:
                paths.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _playlist(path, segment: str) -> str:
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n")
    return str(path)


def _frames(url: str) -> int:
    with open_container(url, SourceOptions(open_timeout=5, stall_timeout=5)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_ffmpeg_enforces_each_schemes_protocol_whitelist(tmp_path, caplog):
    seg = make_clip(tmp_path / "seg.ts", seconds=1, size=(64, 48), audio_codec=None)
    server = _Server(tmp_path)
    av.logging.set_level(av.logging.ERROR)  # FFmpeg's messages to Python logging, to read the refusal
    try:
        assert _frames(f"{server.base}/{os.path.basename(_playlist(tmp_path / 'ok.m3u8', 'seg.ts'))}") == 25  # HLS over HTTP works
        # a remote playlist that points at a local file, a local playlist that points at the network
        for url, protocol, whitelist in [
            (f"{server.base}/{os.path.basename(_playlist(tmp_path / 'to_file.m3u8', f'file://{seg}'))}", "file", urls.PROTOCOLS["http"]),
            (_playlist(tmp_path / "to_http.m3u8", f"{server.base}/seg.ts"), "http", urls.PROTOCOLS["file"]),
        ]:
            caplog.clear()
            n = len(server.paths)
            with caplog.at_level(logging.ERROR, logger="libav"), pytest.raises(SourceError, match="cannot open"):
                _frames(url)
            assert f"Protocol '{protocol}' not on whitelist '{whitelist}'" in caplog.text, caplog.text  # ours, not FFmpeg's default
            assert "/seg.ts" not in server.paths[n:]  # the segment was never fetched
    finally:
        av.logging.set_level(None)
        server.close()
    with pytest.raises(ConfigError, match="files under /etc are never sources"):  # the opener applies the policy too
        open_container("/etc/hostname", SourceOptions())
