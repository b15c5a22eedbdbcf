"""The bundled default model: v5 on pretrained backbones, with its sidecar, card and trained weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engines.export import random_feed
from engines.feed import windows_feed
from engines.runtime import open_runtime
from engines.spec import DEFAULT_MODEL, OUTPUT_EMBEDDING, OUTPUT_LOGITS, load_spec
from streamer.ingest.clip import clip_windows

ROOT = Path(__file__).resolve().parents[2]
DEMO_CLIP = ROOT / "streamer" / "assets" / "demo.mp4"
QUIET_UNTIL = 4.0  # scripts/make_demo_clip.py: two 2 s no-fight clips, then two fight clips

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
    assert spec.version.startswith("5.")
    assert (spec.frames, spec.height, spec.width, spec.samples) == (8, 160, 256, 16000)


def test_default_model_runs_on_cpu():
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime-cpu") as rt:
        out = rt.infer(random_feed(rt.spec, 2, masks=False))
    assert out[OUTPUT_LOGITS].shape == (2, 17)
    assert out[OUTPUT_EMBEDDING].shape == (2, rt.spec.embedding_dim)
    assert np.isfinite(out[OUTPUT_LOGITS]).all()


def test_default_model_torch_weights_match():
    feed = random_feed(load_spec(DEFAULT_MODEL), 2, seed=3)
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime-cpu") as a, open_runtime(DEFAULT_MODEL, backend="torch") as b:
        diff = np.abs(a.infer(feed)[OUTPUT_LOGITS] - b.infer(feed)[OUTPUT_LOGITS]).max()
    assert diff <= 1e-4


def test_default_model_is_trained_on_held_out_data():
    """Its evaluation file (streamer eval on data it was not trained on) is for this version and far
    above chance: 10 UrbanSound8K classes (chance 0.1), glass and fight APs above their base rates."""
    spec = load_spec(DEFAULT_MODEL)
    ev = json.loads(DEFAULT_MODEL.with_suffix(".eval.json").read_text())
    assert ev["version"] == spec.version
    us8k, fight, glass = (ev["classify"][k] for k in ("urbansound8k", "fight", "glass_break"))
    assert us8k["n"] == 888 and us8k["accuracy"] > 0.6
    assert fight["per_class"]["fight"]["ap"] > 0.8 > fight["per_class"]["fight"]["n"] / fight["n"]
    assert glass["per_class"]["glass_break"]["ap"] > 0.9 > glass["per_class"]["glass_break"]["n"] / glass["n"]
    assert ev["anomaly"]["auc"] > 0.9


def test_default_model_scores_the_demo_fight_above_the_quiet_street():
    """On real CCTV (the demo clip: 4 s of a quiet street, then a fight; a source video never trained on)
    the fight's best window scores over the demo camera's fight threshold, and every quiet window under it."""
    from streamer.cli import DEMO_THRESHOLDS

    spec = load_spec(DEFAULT_MODEL)
    windows = clip_windows(DEMO_CLIP, spec)
    with open_runtime(DEFAULT_MODEL, backend="onnxruntime-cpu") as rt:
        logits = np.concatenate([rt.infer(windows_feed(windows[i:i + 8]))[OUTPUT_LOGITS]
                                 for i in range(0, len(windows), 8)])
    fight = 1.0 / (1.0 + np.exp(-logits[:, spec.classes.index("fight")]))
    quiet = [f for f, w in zip(fight, windows) if w.end <= QUIET_UNTIL]
    fighting = [f for f, w in zip(fight, windows) if w.start >= QUIET_UNTIL]
    assert len(quiet) >= 5 and len(fighting) >= 8
    assert max(quiet) < DEMO_THRESHOLDS["fight"] < max(fighting), (quiet, fighting)
