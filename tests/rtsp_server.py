"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving media files, paced in real time.

Run with the system Python that has GObject introspection (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount /cam=clip.mkv:h264:opus

Files are demuxed and re-packetised, not re-encoded (cheap on CPU); the caller names the codecs
(FFmpeg names). Prints `READY <port>` once serving. (A stall is made by SIGSTOP: the connection stays
open and nothing is sent.)
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO = {  # FFmpeg codec name -> parser and payloader
    "h264": "h264parse ! rtph264pay config-interval=1 pt=96",
    "hevc": "h265parse ! rtph265pay config-interval=1 pt=96",
    "mjpeg": "jpegparse ! rtpjpegpay pt=26",
}
AUDIO = {
    "aac": "aacparse ! rtpmp4gpay pt=97",
    "opus": "opusparse ! rtpopuspay pt=97",
    "pcm_mulaw": "rtppcmupay pt=0",
    "pcm_alaw": "rtppcmapay pt=8",
}


def launch_line(path: str, video: str | None, audio: str | None) -> str:
    demux = "qtdemux" if path.lower().endswith((".mp4", ".mov", ".m4a")) else "matroskademux"
    parts = [f'( filesrc location="{path}" ! {demux} name=d']
    pay = 0
    if video:
        parts.append(f"d. ! queue ! {VIDEO[video]} name=pay{pay}")
        pay += 1
    if audio:
        parts.append(f"d. ! queue ! {AUDIO[audio]} name=pay{pay}")
    return " ".join(parts) + " )"


class Factory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, path: str, video: str | None, audio: str | None) -> None:
        super().__init__()
        self.line = launch_line(path, video, audio)
        self.set_shared(False)  # each client plays the file from its start
        self.set_eos_shutdown(False)

    def do_create_element(self, url):  # noqa: N802 (GObject virtual method)
        return Gst.parse_launch(self.line)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mount", action="append", required=True, help="/path=FILE:VIDEO_CODEC:AUDIO_CODEC (codec may be empty)")
    args = p.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for m in args.mount:
        path, spec = m.split("=", 1)
        file, video, audio = spec.rsplit(":", 2)
        mounts.add_factory(path, Factory(file, video or None, audio or None))
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
