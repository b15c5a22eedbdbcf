"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving media files, paced in real time.

Run it with the system Python, which has GObject introspection (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0); the project's venv does not:

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount /cam=clip.mkv [--mount /b=other.mp4] [--loop]

- Files are demuxed and re-packetised, never re-encoded (cheap on CPU). The codecs are found with
  GStreamer's discoverer: H.264, H.265, MJPEG video; AAC, Opus, G.711 (mu/A-law), raw PCM audio.
  Video-only and audio-only files work too.
- Frames leave in real time (the RTP sinks sync on the clock), like a live camera.
- Each client gets its own pipeline and sees the file from its start.
- `--loop` replays the file forever on one continuous timeline: a segment seek on the demuxer at
  start, and a non-flushing segment seek back to 0 at each SEGMENT_DONE. The SDP then announces
  no end (`npt=0-`), as a camera does. Without it the stream ends at the end of the file.
- Prints `READY <port>` on stdout once it is listening; exits 0 on SIGTERM or SIGINT. A stalled
  camera is made with SIGSTOP (the connection stays open, nothing is sent) and SIGCONT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstPbutils", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402

Gst.init(None)  # before the subclasses below: their virtual methods name Gst types

# caps name of the demuxed stream -> parser and payloader (payload types: 96+ dynamic, 0/8/26 static)
VIDEO_PAY = {
    # SPS/PPS in-band at the first IDR of each second (config-interval=-1 would put them before every
    # slice of a multi-slice IDR, and FFmpeg then decodes that IDR as two frames with one PTS)
    "video/x-h264": "h264parse ! rtph264pay config-interval=1 pt=96",
    "video/x-h265": "h265parse ! rtph265pay config-interval=1 pt=96",
    "image/jpeg": "jpegparse ! rtpjpegpay pt=26",
}
AUDIO_PAY = {
    "audio/mpeg": "aacparse ! rtpmp4gpay pt=97",  # AAC as mpeg4-generic (RFC 3640)
    "audio/x-opus": "opusparse ! rtpopuspay pt=97",
    "audio/x-mulaw": "rtppcmupay pt=0",
    "audio/x-alaw": "rtppcmapay pt=8",
    "audio/x-raw": "audioconvert ! rtpL16pay pt=97",  # byte order only: L16 is big-endian
}


def log(msg: str) -> None:
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


def probe(path: str) -> tuple[str | None, str | None]:
    """Caps names of the first video and the first audio stream of a file (None when absent)."""
    info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(Gst.filename_to_uri(os.path.abspath(path)))
    video = [s.get_caps().get_structure(0).get_name() for s in info.get_video_streams()]
    audio = [s.get_caps().get_structure(0).get_name() for s in info.get_audio_streams()]
    return (video[0] if video else None), (audio[0] if audio else None)


def launch_line(path: str, video: str | None, audio: str | None) -> str:
    """The media bin: filesrc ! demuxer, one parser ! payloader (payN) per stream."""
    if path.lower().endswith((".mp4", ".mov", ".m4a", ".m4v", ".3gp")):
        demux = "qtdemux"
    elif path.lower().endswith((".mkv", ".webm", ".mka")):
        demux = "matroskademux"
    else:
        raise ValueError(f"{path}: not .mp4/.mov or .mkv/.webm")
    if video and video not in VIDEO_PAY:
        log(f"{path}: video {video} is not served (supported: {', '.join(VIDEO_PAY)})")
        video = None
    if audio and audio not in AUDIO_PAY:
        log(f"{path}: audio {audio} is not served (supported: {', '.join(AUDIO_PAY)})")
        audio = None
    if not video and not audio:
        raise ValueError(f"{path}: no stream that can be served")
    location = path.replace("\\", "\\\\").replace('"', '\\"')
    parts = [f'( filesrc location="{location}" ! {demux} name=demux']
    pay = 0
    # demuxer pads by name, so audio can never be linked to the video branch
    if video:
        parts.append(f"demux.video_0 ! queue ! {VIDEO_PAY[video]} name=pay{pay}")
        pay += 1
    if audio:
        parts.append(f"demux.audio_0 ! queue ! {AUDIO_PAY[audio]} name=pay{pay}")
    return " ".join(parts) + " )"


def _segment_seek(media: GstRtspServer.RTSPMedia, flags: Gst.SeekFlags) -> None:
    # Sent to the demuxer itself: a seek sent to the pipeline goes through rtpbin and the RTP sinks
    # and does not reach it.
    demux = media.get_element().get_by_name("demux")
    if not demux.seek(1.0, Gst.Format.TIME, flags | Gst.SeekFlags.SEGMENT, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1):
        log("segment seek refused: the stream will end at the end of the file")


class LoopingMedia(GstRtspServer.RTSPMedia):
    """A media that replays its file forever. Running time keeps growing across loops (non-flushing
    segment seeks accumulate the segment base), so RTP timestamps never go back."""

    def do_prepared(self) -> None:  # noqa: N802 (GObject virtual method)
        # prerolled (PAUSED): restart from 0 as a segment so the demuxer posts SEGMENT_DONE, not EOS
        _segment_seek(self, Gst.SeekFlags.FLUSH)

    def do_handle_message(self, message: Gst.Message) -> bool:  # noqa: N802
        if message.type == Gst.MessageType.SEGMENT_DONE:
            _segment_seek(self, Gst.SeekFlags.NONE)
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)

    def do_query_stop(self, stop: int) -> tuple[bool, int]:  # noqa: N802
        return False, -1  # no end: the SDP says npt=0-, like a live camera


class FileFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, path: str, loop: bool) -> None:
        super().__init__()
        video, audio = probe(path)
        self.line = launch_line(path, video, audio)
        log(f"{path}: video={video} audio={audio} loop={loop}")
        self.set_shared(False)  # each client has its own pipeline and sees the file from its start
        self.set_eos_shutdown(False)
        if loop:
            self.set_media_gtype(LoopingMedia)

    def do_create_element(self, url: GstRtspServer.RTSPUrl) -> Gst.Element:  # noqa: N802
        return Gst.parse_launch(self.line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mount", action="append", required=True, metavar="/NAME=FILE",
                   help="serve FILE at rtsp://HOST:PORT/NAME (repeatable)")
    p.add_argument("--loop", action="store_true", help="replay each file forever on one continuous timeline")
    args = p.parse_args(argv)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for m in args.mount:
        name, sep, path = m.partition("=")
        if not sep or not name.startswith("/"):
            p.error(f"--mount {m!r}: expected /NAME=FILE")
        if not os.path.isfile(path):
            p.error(f"--mount {m!r}: {path} is not a file")
        try:
            mounts.add_factory(name, FileFactory(path, args.loop))
        except (ValueError, GLib.Error) as e:
            log(str(e))
            return 2
    if server.attach(None) == 0:
        log(f"cannot listen on {args.host}:{args.port}")
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
