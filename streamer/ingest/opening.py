"""What opening a source takes and gives: its options, its statistics, and the opened PyAV container.

Shared by the source reader, the main-stream reader and the microphone reader (no import cycle)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import av
import av.error

from streamer import urls
from streamer.errors import ConfigError, HwaccelError, SourceError, SourceTimeout, redact


@dataclass
class SourceOptions:
    open_timeout: float = 10.0
    stall_timeout: float = 10.0  # no packet for this long: the read fails and the source is reopened
    realtime: bool = False  # pace a file as if it were live
    loop: bool = False  # replay a file forever (demo)
    decoder_threads: int = 0  # 0 = FFmpeg's choice
    keyframe_width: int = 0  # >0: each window carries its newest frame at this width (evidence)
    hwaccel: str | None = None  # "cuda": NVDEC decoding (frames come back to system memory for windowing)
    mic: str | None = None  # `mic:<device>`: this microphone is the source's audio (aligned on arrival time)
    skip_unsampled: bool = True  # don't decode non-reference frames that no window samples
    audio_offset: float = 0.0  # seconds added to the microphone's times (it lags the camera: negative)
    main_url: str | None = None  # this source is a camera's detect stream; its main stream gives the evidence keyframes (streamer/ingest/mainstream.py)


@dataclass
class SourceStats:
    frames_read: int = 0  # video packets (source frames), decoded or skipped
    frames_decoded: int = 0
    audio_frames_decoded: int = 0
    windows: int = 0
    errors: int = 0
    discontinuities: int = 0  # timestamp jumps the timeline rebased over
    mic_overflows: int = 0  # microphone blocks lost (PortAudio overflowed, or its queue was full)
    end: float = 0.0  # end of the newest window
    last_packet: float = 0.0  # time.monotonic() of the newest packet
    codecs: dict[str, str] = field(default_factory=dict)


def open_container(url: str, opts: SourceOptions) -> av.container.InputContainer:
    """av.open of a URL the policy allows (streamer.urls: ConfigError otherwise), with its protocols
    whitelisted, RTSP over TCP and timeouts; errors name the (redacted) URL."""
    try:
        target, options = urls.open_args(urls.check(url))
    except urls.NotFound:
        raise SourceError(f"source {redact(url)}: no such file") from None
    except ValueError as e:
        raise ConfigError(f"source {redact(url)}: {e}") from None
    kwargs = {}
    if opts.hwaccel:
        from av.codec.hwaccel import HWAccel  # lazily: only hosts that ask for it

        kwargs["hwaccel"] = HWAccel(device_type=opts.hwaccel, allow_software_fallback=False)
    def attempt() -> av.container.InputContainer:
        return av.open(target, mode="r", options=options, timeout=(opts.open_timeout, opts.stall_timeout), **kwargs)

    try:
        return attempt()
    except av.error.FileNotFoundError as e:
        raise SourceError(f"source {redact(url)}: no such file") from e
    except (TimeoutError, av.error.ExitError) as e:
        raise SourceTimeout(f"source {redact(url)}: no answer within {opts.open_timeout:g} s (open_timeout)") from e
    except (av.error.FFmpegError, OSError) as e:
        if opts.hwaccel:  # is it the hardware? it is when the stream opens without it and again not with it
            open_container(url, replace(opts, hwaccel=None)).close()
            try:
                return attempt()  # it opens now: the first failure was the source's (a camera rebooting), not the hardware's
            except (av.error.FFmpegError, OSError):
                pass
            raise HwaccelError(f"source {redact(url)}: hwaccel {opts.hwaccel!r} is not available on this machine "
                               f"({e.__class__.__name__}: {e}); set the camera's hwaccel to none") from e
        raise SourceError(f"source {redact(url)}: cannot open: {e.__class__.__name__}: {e.strerror if hasattr(e, 'strerror') else e}") from e


def keyframe_size(width: int, height: int, box: int, grow: bool = True) -> tuple[int, int]:
    """(w, h) of a frame's keyframe: its longer side `box` (no more than the frame's own unless `grow`), the
    aspect kept, sides even. A portrait frame fits the evidence ring's `box` x `box` room as well."""
    scale = box / max(width, height, 1)
    if not grow:
        scale = min(scale, 1.0)
    cap = max(2, box - box % 2)
    return tuple(max(2, min(int(round(side * scale / 2)) * 2, cap)) for side in (width, height))  # type: ignore[return-value]


class MonoResampler:
    """Decoded audio frames -> mono float32 chunks at `rate` (swresample). rematrix_maxval 1 makes the
    downmix the mean of the channels (its default adds them at -3 dB each, which takes loud stereo past
    1.0). A stream whose sample format, layout or rate changes midway (a reconfigured encoder, or
    corrupt packets the decoder read as another layout) gets a new resampler for its new format."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._new()

    def _new(self) -> None:
        self._r = av.AudioResampler(format="flt", layout="mono", rate=self.rate, options={"rematrix_maxval": "1.0"})

    def __call__(self, frame: av.AudioFrame) -> list:
        try:
            outs = self._r.resample(frame)
        except ValueError:  # PyAV: "Frame does not match AudioResampler setup"
            self._new()
            outs = self._r.resample(frame)
        return [out.to_ndarray()[0] for out in outs]  # packed mono: [1, samples]
