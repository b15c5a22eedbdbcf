"""The bundled default model: a trained checkpoint with its sidecar, card and PyTorch weights."""

from __future__ import annotations

import numpy as np

from engines.export import random_feed
from engines.runtime import open_runtime
from engines.spec import DEFAULT_MODEL, OUTPUT_EMBEDDING, OUTPUT_LOGITS, load_spec

CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
    "gun_shot", "jackhammer", "siren", "street_music", "glass_break", "fight",
)


def test_default_model_spec():
    spec = load_spec(DEFAULT_MODEL)
    assert spec.classes == CLASSES
    assert set(spec.thresholds) == set(CLASSES)
    assert all(0.0 < t < 1.0 for t in spec.thresholds.values())
    assert spec.embedding_dim > 0 and spec.version not in ("", "0")
    assert (spec.frames, spec.height, spec.width, spec.samples) == (8, 112, 112, 16000)


def test_default_model_runs():
    with open_runtime(DEFAULT_MODEL) as rt:
        assert rt.spec.classes == CLASSES
        feed = random_feed(rt.spec, 2, masks=False)
        out = rt.infer(feed)
    assert out[OUTPUT_LOGITS].shape == (2, 12)
    assert out[OUTPUT_EMBEDDING].shape == (2, rt.spec.embedding_dim)
    assert np.isfinite(out[OUTPUT_LOGITS]).all()


def test_default_model_torch_weights_match():
    feed = random_feed(load_spec(DEFAULT_MODEL), 2, seed=3)
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime") as a, open_runtime(DEFAULT_MODEL, backend="torch") as b:
        diff = np.abs(a.infer(feed)[OUTPUT_LOGITS] - b.infer(feed)[OUTPUT_LOGITS]).max()
    assert diff <= 1e-4


def test_default_model_is_trained_and_documented():
    card = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()
    for needed in ("CC BY-NC 3.0", "MIT", "no license stated", "windows/s", "python -m engines.train"):
        assert needed in card
    # a trained model separates classes: logits differ between two different silent/noisy inputs
    spec = load_spec(DEFAULT_MODEL)
    assert DEFAULT_MODEL.stat().st_size < 10e6 and DEFAULT_MODEL.with_suffix(".pt").stat().st_size < 10e6
    assert len(spec.thresholds) == 12
