"""The alert document's types (streamer.outputs.alert_doc) and the published JSON Schema agree: the file
is generated from the types, make_alert's documents pass both, and broken documents fail both."""

import copy
import json
import time

import jsonschema
import pydantic
import pytest

from streamer.outputs.alert_doc import SCHEMA_FILE, json_schema, validate
from streamer.outputs.alerts import ModelInfo, make_alert

MODEL = ModelInfo("fusion", "4.0.0+test", "onnxruntime")
PUBLISHED = json.loads(SCHEMA_FILE.read_text())


def start_alert():
    return make_alert(camera="cam-1", event="fight", state="start", score=0.93, start=10.0, end=11.0,
                      wall_end=time.time(), latency_ms={"decode": 3.1, "queue": -0.2, "infer": 40.0, "end_to_end": 61.0},
                      model=MODEL, top=[("fight", 0.93), ("scream", 0.41), ("dog_bark", 0.02)], level=(-18.5, -3.2),
                      evidence={"keyframe": "streamer:evidence:x:jpg", "audio": "streamer:evidence:x:wav"})


def anomaly_end_alert():
    return make_alert(camera="lobby_2", event="anomaly", state="end", score=0.61, start=10.0, end=14.5,
                      wall_end=time.time(), latency_ms={}, model=MODEL, anomaly_score=9.4,
                      anomaly_cell={"row": 1, "col": 5, "grid": 7}, duration_s=4.5, reason="engine_restart")


def loud_start_alert():
    return make_alert(camera="yard", event="loud", state="start", score=0.15, start=3.0, end=4.0, wall_end=time.time(),
                      latency_ms={}, model=MODEL, top=[("dog_bark", 0.3)], level=(-16.48, -1.94))


def test_the_published_schema_is_the_one_the_types_generate():
    assert PUBLISHED == json_schema(), "run python -m streamer.outputs.alert_doc"
    assert PUBLISHED["$id"] == "streamer/alert.v2.json" and PUBLISHED["properties"]["schema_version"]["const"] == 2
    v1 = json.loads(SCHEMA_FILE.with_name("alert.v1.json").read_text())  # still published for older documents
    assert v1["properties"]["schema_version"]["const"] == 1 and "top" not in v1["properties"]


def test_every_alert_carries_its_window_top_scores_and_level():
    doc = start_alert()
    assert doc["schema_version"] == 2
    assert doc["top"] == [{"class": "fight", "score": 0.93}, {"class": "scream", "score": 0.41}, {"class": "dog_bark", "score": 0.02}]
    assert doc["level"] == {"rms_dbfs": -18.5, "peak_dbfs": -3.2}
    end = anomaly_end_alert()
    assert end["top"] == [] and end["level"] is None  # made without a window (an engine restart)


@pytest.mark.parametrize("make", [start_alert, anomaly_end_alert, loud_start_alert])
def test_make_alert_documents_pass_the_types_and_the_published_schema(make):
    doc = make()
    assert validate(doc) == doc
    jsonschema.validate(doc, PUBLISHED)


BROKEN = {
    "an unknown key": lambda d: d.update(colour="red"),
    "reason null (absent is how 'none' is said)": lambda d: d.update(reason=None),
    "an unknown reason": lambda d: d.update(reason="timeout"),
    "no anomaly_score": lambda d: d.pop("anomaly_score"),
    "a negative anomaly score": lambda d: d.update(anomaly_score=-1.0),
    "a cell without its grid": lambda d: d["anomaly_cell"].pop("grid"),
    "an id that is not a UUIDv7": lambda d: d.update(id="4b0e6f0e-1111-4111-8111-111111111111"),
    "a camera id with a space": lambda d: d.update(camera="front door"),
    "a score over 1": lambda d: d.update(score=1.5),
    "another state": lambda d: d.update(state="open"),
    "schema version 3": lambda d: d.update(schema_version=3),
    "an unknown latency stage": lambda d: d["latency_ms"].update(render=1.0),
    "a model without backend": lambda d: d["model"].pop("backend"),
    "a negative duration": lambda d: d.update(duration_s=-1.0),
    "a score as text": lambda d: d.update(score="0.5"),
    "schema version 1": lambda d: d.update(schema_version=1),
    "no top scores": lambda d: d.pop("top"),
    "a top score over 1": lambda d: d.update(top=[{"class": "fight", "score": 1.2}]),
    "a top score without its class": lambda d: d.update(top=[{"score": 0.2}]),
    "no level key (null is how 'no audio' is said)": lambda d: d.pop("level"),
    "a level over full scale": lambda d: d.update(level={"rms_dbfs": 3.0, "peak_dbfs": 6.0}),
    "a level of -inf": lambda d: d.update(level={"rms_dbfs": float("-inf"), "peak_dbfs": -10.0}),
    "a level without its peak": lambda d: d.update(level={"rms_dbfs": -30.0}),
}


@pytest.mark.parametrize("why", list(BROKEN))
def test_a_broken_document_fails_the_types_and_the_published_schema(why):
    doc = copy.deepcopy(anomaly_end_alert())
    BROKEN[why](doc)
    with pytest.raises(pydantic.ValidationError):
        validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, PUBLISHED)
