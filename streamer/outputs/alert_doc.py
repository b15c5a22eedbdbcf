"""The alert document, as pydantic types: what make_alert builds, what consumers read.

The published JSON Schema, streamer/schemas/alert.v2.json, is generated from these types
(`python -m streamer.outputs.alert_doc` rewrites it; a test checks that it is in sync). The document
stays a plain dict (TypedDict): optional keys are absent rather than null. alert.v1.json stays published,
unchanged, for documents written before version 2 (v2 added `top` and `level`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import NotRequired, TypedDict

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "alert.v2.json"
FORBID = ConfigDict(extra="forbid")

NonNegative = Annotated[float, Field(ge=0)]
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Reason = Literal["cooldown", "source_end", "engine_restart", "stop"]
State = Literal["start", "end"]


@with_config(FORBID)
class AnomalyCell(TypedDict):
    """event anomaly, start alerts with a moving object: the grid cell of the window's worst object (row 0 = top, col 0 = left)."""

    row: Annotated[int, Field(ge=0)]
    col: Annotated[int, Field(ge=0)]
    grid: Annotated[int, Field(ge=1, description="The grid is grid x grid cells over the frame.")]


@with_config(FORBID)
class Latency(TypedDict, total=False):
    """Per-stage latency of the window that caused the alert; empty for an end alert made at shutdown or source end."""

    decode: Annotated[NonNegative, Field(description="Decoding the window's inputs.")]
    window: Annotated[NonNegative, Field(description="Converting sampled frames and assembling the window.")]
    queue: Annotated[float, Field(description="Last input arrived -> inference started.")]
    infer: Annotated[NonNegative, Field(description="The engine call (whole batch).")]
    publish: Annotated[NonNegative, Field(description="Building the alert and its evidence.")]
    end_to_end: Annotated[float, Field(description="Last input arrived -> alert handed to Redis.")]


@with_config(FORBID)
class ModelRef(TypedDict):
    name: str
    version: str
    backend: str


@with_config(FORBID)
class Evidence(TypedDict, total=False):
    """Redis keys (with a TTL) of the evidence stored with a start alert."""

    keyframe: Annotated[str, Field(description="JPEG of the window's newest frame.")]
    audio: Annotated[str, Field(description="WAV (16-bit, 16 kHz mono) of the window's audio.")]


TopScore = with_config(FORBID)(TypedDict("TopScore", {
    "class": str,
    "score": Annotated[float, Field(ge=0, le=1)],
}))
TopScore.__doc__ = "A model class and its score in the alert's window."


@with_config(FORBID)
class Level(TypedDict):
    """The sound level of the alert's window, in dBFS (0 = full scale; digital silence is -120)."""

    rms_dbfs: Annotated[float, Field(ge=-120, le=0)]
    peak_dbfs: Annotated[float, Field(ge=-120, le=0)]


@with_config(ConfigDict(
    extra="forbid", title="streamer alert, schema version 2",
    json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "streamer/alert.v2.json"},
))
class Alert(TypedDict):
    """One alert: an event opening (state start) or closing (state end) on one camera. XADDed to the alert stream (field json) and PUBLISHed on <prefix>:<camera>."""

    schema_version: Literal[2]
    id: Annotated[str, Field(pattern="^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                             description="UUIDv7: unique, sorts by creation time; consumers deduplicate replays by it.")]
    camera: Annotated[str, Field(pattern="^[A-Za-z0-9_.-]{1,64}$")]
    event: Annotated[str, Field(description="A model class (e.g. fight, glass_break, gun_shot), anomaly, or loud.")]
    state: State
    score: Annotated[float, Field(ge=0, le=1, description=(
        "start: the score that opened the event; end: its peak. Event anomaly: anomaly_score / (anomaly_score + "
        "threshold), 0.5 at the threshold. Event loud: the RMS level as a linear amplitude, 10^(dBFS/20)."))]
    anomaly_score: Annotated[NonNegative | None, Field(description=(
        "event anomaly: the camera's normality score (start: the window's; end: the peak); null for other events."))]
    anomaly_cell: NotRequired[AnomalyCell]
    start: Annotated[float, Field(description="Event start, seconds on the source clock.")]
    end: Annotated[float, Field(description=(
        "start: end of the window that opened the event; end: end of the last window over threshold."))]
    start_utc: Time
    end_utc: Time
    time: Annotated[Time, Field(description="When the alert was made.")]
    duration_s: NotRequired[Annotated[NonNegative, Field(description="end alerts only.")]]
    reason: NotRequired[Annotated[Reason, Field(description=(
        "end alerts only, optional (absent = cooldown): why the event closed. cooldown: its scores stayed under "
        "threshold for detect.cooldown; source_end: the source finished; engine_restart: the engine process died "
        "and was restarted, so the event's windows were cut; stop: streamer was stopped."))]]
    top: Annotated[list[TopScore], Field(description=(
        "The alert's window's highest class scores (detect.top_k of them, highest first): what the model heard and saw. "
        "Empty for an end alert made without a window (reason source_end, engine_restart, stop)."))]
    level: Annotated[Level | None, Field(description=(
        "The sound level of the alert's window; null when that window had no audio, or there was no window."))]
    latency_ms: Latency
    model: ModelRef
    evidence: Evidence


ALERT = TypeAdapter(Alert)


def validate(doc: dict[str, Any]) -> Alert:
    """The document checked against the types (pydantic.ValidationError names the key path otherwise)."""
    return ALERT.validate_python(doc, strict=True)


def json_schema() -> dict[str, Any]:
    return ALERT.json_schema()


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text())
    print(f"wrote {SCHEMA_FILE}", file=sys.stderr)
