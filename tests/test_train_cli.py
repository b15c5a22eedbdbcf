"""`streamer train` for real on small folders: a user's own classes, and the default recipe's layout;
then `streamer eval classify` with the model it wrote."""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from streamer.cli import main
from tests.media import make_clip, make_scene

RATE = 16000


def write_wav(path: Path, kind: str, seed: int, seconds: float = 1.5) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f = {"whistle": 2000.0, "hum": 150.0}.get(kind, 0.0) * (1 + 0.05 * rng.standard_normal())
    x = 0.01 * rng.standard_normal(len(t))
    if f:
        x += 0.4 * np.sin(2 * np.pi * f * t) + (0.2 * np.sin(4 * np.pi * f * t) if kind == "hum" else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def write_labels(folder: Path, rows: list[dict]) -> None:
    with (folder / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def own_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("own")
    rows = []
    for label in ("whistle", "hum", "background"):
        for i in range(6):
            write_wav(d / "audio" / f"{label}{i}.wav", label, seed=i)
            rows.append({"file": f"audio/{label}{i}.wav", "label": label, "source_id": f"{label}-{i}"})
    write_labels(d, rows)
    return d


@pytest.mark.timeout(300)  # decoding, features, 5 out-of-fold fits and an ONNX export on 2 cores
def test_train_own_classes_then_eval(own_folder, tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["train", "--data", str(own_folder), "--out", str(out), "--name", "mine", "--minutes", "0.2",
                 "--bench-seconds", "0"]) == 0
    side = json.loads((out / "mine.json").read_text())
    assert side["classes"] == ["hum", "whistle"] and set(side["thresholds"]) == {"hum", "whistle"}
    assert side["modality"] == {"hum": "audio", "whistle": "audio"} and side["audioset"] == {}
    assert (out / "mine.pt").is_file() and (out / "mine.card.md").is_file()
    capsys.readouterr()
    assert main(["eval", "classify", str(own_folder), "--model", str(out / "mine.onnx"), "--negative", "background",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 18
    assert rep["per_class"]["whistle"]["ap"] >= 0.9 and rep["per_class"]["hum"]["ap"] >= 0.9


def test_train_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("file,label\nmissing.wav,bark\n")
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.wav" in err
    assert main(["train", "--data", str(tmp_path / "nothing")]) == 1
    assert "neither a classification folder" in capsys.readouterr().err


URBAN = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling", "gun_shot",
         "jackhammer", "siren", "street_music")


@pytest.mark.timeout(300)
def test_default_recipe_on_a_small_copy_of_its_layout(tmp_path):
    """The recipe as `streamer train --data ../shared/data` runs it, on folders of the same layout."""
    data = tmp_path / "data"
    rows = []
    for k, c in enumerate(URBAN):
        for fold in (1, 2):
            name = f"audio/fold{fold}/{c}{len(rows)}.wav"
            write_wav(data / "urbansound8k" / name, "whistle" if k % 2 else "hum", seed=len(rows))
            rows.append({"file": name, "label": c, "fold": str(fold), "source_id": str(len(rows))})
    write_labels(data / "urbansound8k", rows)
    rows = []
    for label in ("glass_break", "background"):
        for i in range(4):
            write_wav(data / "glass_break" / "audio" / f"{label}{i}.wav", "whistle" if label == "glass_break" else "",
                      seed=i, seconds=1.0)
            rows.append({"file": f"audio/{label}{i}.wav", "label": label, "source_id": f"{label}{i}"})
    write_labels(data / "glass_break", rows)
    rows = []
    (data / "fight" / "video").mkdir(parents=True)
    for i in range(4):
        make_clip(data / "fight" / "video" / f"fi{i}.mp4", seconds=2.0, size=(160, 120), seed=i)
        make_scene(data / "fight" / "video" / f"no{i}.mp4", seconds=2.0, seed=i)
        rows += [{"file": f"video/fi{i}.mp4", "label": "fight", "source_id": f"f{i}"},
                 {"file": f"video/no{i}.mp4", "label": "no_fight", "source_id": f"n{i}"}]
    write_labels(data / "fight", rows)
    out = tmp_path / "weights"
    assert main(["train", "--data", str(data), "--out", str(out), "--minutes", "0.3", "--bench-seconds", "0"]) == 0
    side = json.loads((out / "fusion.json").read_text())
    assert side["classes"][:12] == [*URBAN, "glass_break", "fight"]
    assert set(side["audioset"]) == {"scream", "explosion", "smoke_alarm", "shatter", "car_alarm"}
    metrics = json.loads((out / "fusion.metrics.json").read_text())
    assert metrics["validation"]["urbansound8k_clips"] == 10 and metrics["recipe"] == "default"
    assert "fight" in (out / "MODEL_CARD.md").read_text()


def test_the_default_recipe_writes_into_the_package_only_in_a_source_checkout(tmp_path):
    from engines.spec import WEIGHTS_DIR
    from streamer.train.cli import recipe_out

    assert recipe_out() == WEIGHTS_DIR  # this checkout (editable install)
    installed = tmp_path / "site-packages" / "engines" / "weights"
    installed.mkdir(parents=True)
    assert recipe_out(installed) == Path("models")  # a wheel install: never into site-packages
    (tmp_path / "site-packages" / "pyproject.toml").write_text("[project]\n")
    assert recipe_out(installed) == installed
