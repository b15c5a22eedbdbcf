"""The bundled default model: v4 on pretrained backbones, with its sidecar, card and trained weights."""

from __future__ import annotations

import json

import numpy as np

from engines.export import random_feed
from engines.runtime import open_runtime
from engines.spec import DEFAULT_MODEL, OUTPUT_EMBEDDING, OUTPUT_LOGITS, load_spec

TRAINED = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
    "gun_shot", "jackhammer", "siren", "street_music", "glass_break", "fight",
)
MAPPED = ("scream", "explosion", "smoke_alarm", "shatter", "car_alarm")


def test_default_model_spec():
    spec = load_spec(DEFAULT_MODEL)
    assert spec.classes == TRAINED + MAPPED
    assert set(spec.thresholds) == set(spec.classes)
    assert all(0.5 <= t < 1.0 for t in spec.thresholds.values())
    assert set(spec.audioset) == set(MAPPED) and spec.modality["fight"] == "video"
    assert spec.version.startswith("4.")
    assert (spec.frames, spec.height, spec.width, spec.samples) == (8, 112, 112, 16000)


def test_default_model_runs_on_cpu():
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime") as rt:
        out = rt.infer(random_feed(rt.spec, 2, masks=False))
    assert out[OUTPUT_LOGITS].shape == (2, 17)
    assert out[OUTPUT_EMBEDDING].shape == (2, rt.spec.embedding_dim)
    assert np.isfinite(out[OUTPUT_LOGITS]).all()


def test_default_model_torch_weights_match():
    feed = random_feed(load_spec(DEFAULT_MODEL), 2, seed=3)
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime") as a, open_runtime(DEFAULT_MODEL, backend="torch") as b:
        diff = np.abs(a.infer(feed)[OUTPUT_LOGITS] - b.infer(feed)[OUTPUT_LOGITS]).max()
    assert diff <= 1e-4


def test_default_model_heads_are_trained():
    """Trained heads separate the classes: a silent window and a loud tone get different audio scores,
    and the stored training report holds the validation numbers the card shows."""
    spec = load_spec(DEFAULT_MODEL)
    feed = random_feed(spec, 2, seed=1)
    feed["audio"][0] = 0.0
    t = np.arange(spec.samples) / spec.sample_rate
    feed["audio"][1] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime") as rt:
        logits = rt.infer(feed)[OUTPUT_LOGITS]
    assert np.abs(logits[0, :11] - logits[1, :11]).max() > 1.0
    metrics = json.loads(DEFAULT_MODEL.with_suffix(".metrics.json").read_text())
    assert metrics["version"] == spec.version
    assert metrics["validation"]["urbansound8k_clips"] == 888
    card = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()
    for needed in ("CC BY-NC 3.0", "MIT", "Apache-2.0", "no license stated", "streamer train", spec.version):
        assert needed in card
