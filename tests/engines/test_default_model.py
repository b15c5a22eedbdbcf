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


def test_default_model_results_are_of_these_weights_on_sources_held_out(tmp_path):
    """The training and evaluation results shipped beside the model (the figures of MODEL_CARD.md and
    docs/model.md) are of these exact weights: the digest over the graph and its weight files is the
    version's suffix and the one both results files name, or a re-packaging of them recorded in the metrics
    file (whose scores another test pins), so new weights without a new evaluation fail.
    And the validation split they were measured on holds whole sources out of training."""
    from engines.export import model_sha256
    from streamer.train.data import read_clips

    spec = load_spec(DEFAULT_MODEL)
    digest = model_sha256(DEFAULT_MODEL)[:12]
    metrics = json.loads(DEFAULT_MODEL.with_suffix(".metrics.json").read_text())
    ev = json.loads(DEFAULT_MODEL.with_suffix(".eval.json").read_text())
    trained = metrics["model_sha256_12"]  # the files as trained and evaluated
    assert spec.version.endswith(f"+{trained}")
    assert metrics["version"] == ev["version"] == spec.version
    # the files shipped are those, or their re-packaging recorded beside them (same scores: test_default_model_scores.py)
    assert digest in (trained, metrics.get("repackaged", {}).get("model_sha256_12")), digest

    # a fight folder of 40 source videos, several clips cut from each (near-duplicates of one another)
    folder = tmp_path / "fight"
    folder.mkdir()
    rows = [f"video/{src}_{i}.mp4,{'fight' if src < 25 else 'no_fight'},{src}" for src in range(40)
            for i in range(1 + src % 4)]
    (folder / "labels.csv").write_text("file,label,source_id\n" + "\n".join(rows) + "\n")
    clips = read_clips(tmp_path, "fight")
    val = [c for c in clips if c.split == "val"]
    train = [c for c in clips if c.split == "train"]
    assert not {c.source_id for c in val} & {c.source_id for c in train}
    assert {c.label for c in val} == {c.label for c in train} == {"fight", "no_fight"}
    assert 0.15 <= len(val) / len(clips) <= 0.35


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
