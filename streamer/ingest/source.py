"""One source into windows: a stream or file decoded with PyAV (its audio, or a paired microphone's, or
its main stream's), or a microphone alone (`mic:<device>`)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer import urls
from streamer.errors import HwaccelError, SourceError, SourceTimeout, redact
from streamer.ingest.opening import MonoResampler, SourceOptions, SourceStats, keyframe_size, open_container
from streamer.ingest.timeline import Timeline
from streamer.ingest.windower import Geometry, Windower
from streamer.window import Window

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Decoded:
    """One timed input of a source: a video frame, or mono audio at the model rate."""

    kind: str  # "video" | "audio"
    t: float  # timeline time (s)
    data: Any  # av.VideoFrame | np.ndarray (float32 pcm)
    decode_s: float = 0.0  # what decoding it cost
    duration: float = 0.0
    paired: bool = False  # audio from a paired input (microphone, main stream): not the source's own timeline


class SourceReader:
    """Decodes a source into windows. One instance per source; not thread-safe."""

    def __init__(self, url: str, camera: str, geo: Geometry, opts: SourceOptions | None = None, start: float = 0.0) -> None:
        """`start`: source time of the first input (a reconnect continues the timeline where it stopped)."""
        self.start = start
        self.url = url
        self.camera = camera
        self.geo = geo
        self.opts = opts or SourceOptions()
        self.stats = SourceStats()
        # One reformatter per source keeps swscale's context (its filters) across frames: building it
        # per frame costs more than the scaling itself. Model input uses FAST_BILINEAR (2 taps, like an
        # un-antialiased bilinear resize): 3.5x cheaper than BILINEAR from 1080p; the keyframe a person
        # looks at uses BILINEAR.
        self._sws = VideoReformatter()
        self._sws_key = VideoReformatter()
        self._main = None  # MainStream when opts.main_url
        self._main_t = 0.0  # the detect stream's newest frame time (the main keyframe to take)

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        return self._sws.reformat(frame, width=self.geo.width, height=self.geo.height, format="rgb24",
                                  interpolation="FAST_BILINEAR").to_ndarray()

    def _keyframe(self, frame: av.VideoFrame, last: float) -> np.ndarray | None:
        """`frame`: the detect stream's newest; `last`: the time of the window's last picture."""
        grow = True
        if self._main is not None:  # the main stream's newest keyframe in the window; the detect frame's (no larger) until it has one
            main = self._main.keyframe(min(self._main_t, last))
            if main is not None:
                return main  # the same array while it is unchanged: nothing is copied here
            grow = False
        w, h = keyframe_size(frame.width, frame.height, self.opts.keyframe_width, grow)
        return self._sws_key.reformat(frame, width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()

    def windows(self) -> Iterator[Window]:
        offset = self.start  # source time added per loop iteration so windows keep increasing
        wall0 = time.monotonic() - self.start
        windower: Windower | None = None
        while True:
            end_t, windower = yield from self._play(offset, wall0, windower)
            if not self.opts.loop:
                for w in windower.flush():
                    self.stats.windows += 1
                    yield w
                return
            offset = end_t

    def _play(self, offset: float, wall0: float, windower: Windower | None):
        """One pass over the source (one connection, or one loop of a file): its inputs' timed events into
        the windower. Returns (timeline end, windower) for the next loop."""
        container = None if urls.is_mic(self.url) else open_container(self.url, self.opts)
        mic = None
        try:
            vs = container.streams.video[0] if container and container.streams.video else None
            aus = container.streams.audio[0] if container and container.streams.audio else None
            mic, aus = self._open_audio(aus, offset, wall0)
            if vs is None and aus is None and mic is None:
                raise SourceError(f"source {redact(self.url)}: no video or audio stream")
            if windower is None:
                has_audio = aus is not None or mic is not None or bool(self._main and self._main.has_audio)
                windower = Windower(self.camera, self.geo, self._convert, has_video=vs is not None, has_audio=has_audio,
                                    keyframe=self._keyframe if self.opts.keyframe_width else None,
                                    first_window=math.ceil(self.start / self.geo.hop - 1e-9))
            if container is None:  # a microphone alone
                events = self._mic_alone(mic, offset)
            else:
                events = self._decoded(container, vs, aus, Timeline(self.camera, offset, wall0, self.opts.realtime), windower)
                if mic is not None:
                    events = self._with_mic(events, mic)
            if self._main is not None:
                events = self._with_main(events)
            return (yield from self._window(events, windower, offset)), windower
        finally:
            if mic is not None:
                mic.close()
            if self._main is not None:
                self._main.close()  # its keyframes stay readable for the windows flushed at the end
            if container is not None:
                container.close()

    def _open_audio(self, aus, offset: float, wall0: float):
        """(microphone, container audio stream): the microphone (`mic:` as the url, or opts.mic) in place of
        the container's audio; the main stream opened beside a substream."""
        mic_url = self.url if urls.is_mic(self.url) else self.opts.mic
        mic = None
        if mic_url:
            from streamer.ingest.mic import Microphone

            mic, aus = Microphone(mic_url, self.geo.sample_rate, self.opts.stall_timeout, self.stats), None
            self.stats.codecs["audio"] = "pcm (PortAudio)"
        if self.opts.main_url:
            from streamer.ingest.mainstream import MainStream

            try:
                self._main = MainStream(self.opts.main_url, self.opts, self.geo.sample_rate, want_audio=aus is None and mic is None,
                                        offset=offset, wall0=wall0, max_width=self.opts.keyframe_width, paced=self.opts.realtime,
                                        camera=self.camera)
            except BaseException:  # the caller never saw the microphone: it is closed here
                if mic is not None:
                    mic.close()
                raise
            if self._main.has_audio:
                self.stats.codecs["audio"] = f"{self._main.aus.codec_context.name} (main stream)"
        return mic, aus

    def _window(self, events: Iterator[Decoded], windower: Windower, offset: float):
        """The events into the windower, each window yielded as it is ready; returns the timeline's end."""
        end_t = offset
        try:
            for ev in events:
                if ev.kind == "video":
                    windower.add_video(ev.t, ev.data, ev.decode_s)
                else:
                    windower.add_audio(ev.t, ev.data, ev.decode_s)
                if not ev.paired:
                    end_t = max(end_t, ev.t + ev.duration)
                for w in windower.ready():
                    self.stats.windows += 1
                    self.stats.end = w.end
                    yield w
        except SourceError:  # already names its input (a microphone's stall)
            raise
        except (TimeoutError, av.error.ExitError) as e:  # ExitError: the interrupt callback's timeout fired
            raise SourceTimeout(f"source {redact(self.url)}: no data within {self.opts.stall_timeout:g} s (stall_timeout)") from e
        except av.error.FFmpegError as e:
            raise SourceError(f"source {redact(self.url)}: read failed: {e}") from e
        return end_t

    def _decoded(self, container, vs, aus, timeline: Timeline, windower: Windower) -> Iterator[Decoded]:
        """The container's frames as timed events (video: the av.VideoFrame; audio: mono float32 at the
        model rate), placed on the timeline and paced; ends at the end of the file."""
        streams, resampler = self._decode_streams(vs, aus)
        skipper = _Skipper(vs, self.opts, timeline, windower)
        jumps0 = self.stats.discontinuities  # counted over every reconnect
        frame_s = 1 / float(vs.average_rate or 25) if vs is not None else 0.0  # a video frame's duration
        try:
            for packet in container.demux(streams):
                self.stats.last_packet = time.monotonic()
                kind = packet.stream.type
                if kind == "video" and packet.size:
                    self.stats.frames_read += 1
                    skipper.see(packet)
                t_dec = time.perf_counter()
                for frame in self._decode(packet, kind):
                    step = frame_s if kind == "video" else frame.samples / frame.sample_rate
                    rt = timeline.place(kind, frame.time, step)
                    self.stats.discontinuities = jumps0 + timeline.discontinuities
                    timeline.pace(rt)
                    if kind == "video":
                        self.stats.frames_decoded += 1
                        yield Decoded("video", rt, frame, time.perf_counter() - t_dec, windower.frame_dt)
                    else:
                        self.stats.audio_frames_decoded += 1
                        yield from self._audio(frame, rt, resampler, t_dec)
                    t_dec = time.perf_counter()
        except av.error.EOFError:
            return

    def _decode_streams(self, vs, aus) -> tuple[list, MonoResampler | None]:
        """The streams to demux, their decoders set up, and the audio's resampler (None: no audio)."""
        streams = []
        if vs is not None:
            vs.thread_type = "AUTO"
            if self.opts.decoder_threads:
                vs.codec_context.thread_count = self.opts.decoder_threads
            self.stats.codecs["video"] = vs.codec_context.name
            streams.append(vs)
        resampler = None
        if aus is not None:
            self.stats.codecs["audio"] = aus.codec_context.name
            resampler = MonoResampler(self.geo.sample_rate)
            streams.append(aus)
        return streams, resampler

    def _decode(self, packet, kind: str) -> list:
        """The packet's frames; none for a corrupt packet (counted). A hardware decoder that fails before its
        first frame is an HwaccelError (the camera's config must change)."""
        try:
            return packet.decode()
        except av.error.InvalidDataError:
            self.stats.errors += 1
            return []
        except av.error.FFmpegError as e:
            if self.opts.hwaccel and kind == "video" and not self.stats.frames_decoded:
                raise HwaccelError(f"source {redact(self.url)}: hwaccel {self.opts.hwaccel!r} is not available "
                                   f"on this machine ({e}); set the camera's hwaccel to none") from e
            raise

    def _audio(self, frame, rt: float, resampler: MonoResampler, t_dec: float) -> Iterator[Decoded]:
        """One audio frame as mono blocks at the model rate, each at its own time."""
        for pcm in resampler(frame):
            dur = len(pcm) / self.geo.sample_rate
            yield Decoded("audio", rt, pcm, time.perf_counter() - t_dec, dur)
            rt += dur

    def _with_mic(self, events: Iterator[Decoded], mic) -> Iterator[Decoded]:
        """A microphone as a camera's audio: its blocks, drained after each video frame, placed by arrival
        time (time.monotonic() of the first video frame is that frame's timeline time)."""
        anchor: float | None = None
        for ev in events:
            yield ev
            if ev.kind == "video":
                if anchor is None:
                    anchor = time.monotonic() - ev.t
                yield from self._mic_audio(mic.drain(), anchor, paired=True)

    def _mic_alone(self, mic, start: float) -> Iterator[Decoded]:
        """A microphone on its own (`mic:` as the url): its blocks as they come, the first one's arrival
        at timeline time `start`; no block within stall_timeout is a SourceTimeout."""
        block = mic.get(self.opts.stall_timeout)
        anchor = block[0] - start
        while True:
            self.stats.last_packet = time.monotonic()
            yield from self._mic_audio([block], anchor, paired=False)
            block = mic.get(self.opts.stall_timeout)

    def _mic_audio(self, blocks, anchor: float, paired: bool) -> Iterator[Decoded]:
        """Microphone blocks (arrival time, pcm) on the timeline: arrival less `anchor`, plus audio_offset."""
        for t_wall, pcm in blocks:
            yield Decoded("audio", t_wall - anchor + self.opts.audio_offset, pcm, paired=paired)

    def _with_main(self, events: Iterator[Decoded]) -> Iterator[Decoded]:
        """The main stream beside a substream: before each video frame, its audio up to that frame's time
        (its keyframe is taken when the frame is windowed); at the end, the rest of its audio."""
        for ev in events:
            if ev.kind == "video":
                self._main_t = ev.t
                yield from self._main_audio(ev.t)
            yield ev
        yield from self._main_audio(math.inf)  # the detect stream ended: the main stream's audio up to its end

    def _main_audio(self, t: float) -> Iterator[Decoded]:
        main = self._main
        main.wait_for(t)
        for ta, pcm in main.drain_audio():
            yield Decoded("audio", ta, pcm, paired=True)
        if main.error is not None:
            if main.has_audio:  # the camera's audio is gone: reconnect both
                raise main.error
            log.warning("camera %s: %s; evidence keyframes from the detect stream until the source is reopened", self.camera, main.error)
            main.error = None
            main.close()
            main.keyframes.clear()


class MicReader(SourceReader):
    """A microphone on its own (`mic:<device>`): audio-only windows (video_mask = 0), by the same path
    as a camera's paired microphone."""

    def __init__(self, url: str, camera: str, geo: Geometry, stall_timeout: float = 5.0, start: float = 0.0) -> None:
        super().__init__(url, camera, geo, SourceOptions(stall_timeout=stall_timeout), start)


class _Skipper:
    """Frames no window samples are not decoded when nothing depends on them (non-reference frames, e.g.
    most B-frames): a frame is wanted when a sample time lies within 0.6 frame periods of it (the
    nearest frame to every sample time is always decoded). Off with hwaccel or `skip_unsampled: false`."""

    def __init__(self, vs, opts: SourceOptions, timeline: Timeline, windower: Windower) -> None:
        rate = float(vs.average_rate or vs.guessed_rate or 0) if vs is not None else 0.0
        self.margin = 0.6 / rate if rate > 0 and opts.skip_unsampled and not opts.hwaccel else 0.0
        self.time_base = float(vs.time_base) if vs is not None and vs.time_base else 0.0
        self.vs, self.timeline, self.windower = vs, timeline, windower
        self.skipping = False

    def see(self, packet) -> None:
        """Before a video packet is decoded: the decoder skips non-reference frames while none is wanted."""
        if not self.margin:
            return
        pts = packet.pts
        at = self.timeline.peek(pts * self.time_base) if pts is not None and self.time_base > 0 else None
        skip = at is not None and not self.windower.wants(at, self.margin)
        if skip != self.skipping:
            self.vs.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self.skipping = skip


def probe_geometry(spec, hop: float) -> Geometry:
    """Window geometry for a model spec (engines.spec.ModelSpec) and a hop."""
    return Geometry(spec.frames, spec.height, spec.width, spec.window_seconds, hop, spec.sample_rate)
