"""`streamer eval classify|anomaly` and `streamer learn-normal` on generated folders with a tiny real model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engines.spec import ModelSpec
from streamer.eval_cli import main
from tests.media import make_clip, write_h264

FPS = 10


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    """A tiny FusionNet on 64x64 frames."""
    import onnx
    import torch

    from engines.export import export_onnx
    from engines.model import Arch, FusionNet, embedding_dim, embedding_layout, set_static_output_dims

    arch = Arch(pose_frames=(0, 1))
    spec = ModelSpec(name="tiny", frames=2, height=64, width=64, window_seconds=1.0, classes=("a", "b", "c"),
                     thresholds={"a": 0.5, "b": 0.5, "c": 0.5}, embedding_dim=embedding_dim(arch))
    torch.manual_seed(0)
    model = FusionNet(spec, arch).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(model, spec, path)
    set_static_output_dims(path, spec)
    assert embedding_layout(spec, arch)["people"] == [1024, 1046]  # where the sidecar says the people features sit
    dims = [[d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in onnx.load(str(path)).graph.output]
    assert dims == [["batch", 3], ["batch", 1046]]  # only the batch axis is dynamic
    return path


def write_scene(path: Path, seconds: float, anomaly: tuple[float, float] | None = None, seed: int = 0) -> int:
    """A fixed dark scene with a small square walking across; during `anomaly` (s) a big bright block
    crosses it fast. Returns the number of frames."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(20, 60, (96, 128, 3), dtype=np.uint8)
    n = int(seconds * FPS)

    def frames():
        for i in range(n):
            img = bg.copy()
            x = (i * 4) % 110
            img[40:52, x : x + 10] = 140
            if anomaly and anomaly[0] <= i / FPS < anomaly[1]:
                bx = int((i / FPS - anomaly[0]) * 50)  # 50 px/s, five times the walker
                img[60:90, bx : bx + 30] = 250
            yield img

    write_h264(path, frames(), FPS, (128, 96), {"preset": "ultrafast", "crf": "18"})
    return n


def test_eval_classify_json(tmp_path, tiny_model_file, capsys):
    d = tmp_path / "cls"
    d.mkdir()
    rows = []
    for i, (label, kind) in enumerate([("a", "audio"), ("a", "video"), ("b", "both"), ("b", "audio"),
                                       ("none", "both"), ("none", "video")]):
        name = f"clip{i}.mp4"
        make_clip(d / name, seconds=1.0 + 0.5 * i, fps=FPS, size=(64, 48), seed=i,
                  video_codec=None if kind == "audio" else "h264", audio_codec=None if kind == "video" else "aac")
        rows.append({"file": name, "label": label})
    with (d / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["file", "label"])
        w.writeheader()
        w.writerows(rows)
    assert main(["eval", "classify", str(d), "--json", "--negative", "none,background", "--model",
                 str(tiny_model_file), "--workers", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and set(out) == {"n", "accuracy", "macro_f1", "per_class"}
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["macro_f1"] <= 1.0
    assert set(out["per_class"]) == {"a", "b", "none"}
    assert all(set(m) == {"ap", "precision", "recall", "n"} for m in out["per_class"].values())
    assert [out["per_class"][k]["n"] for k in ("a", "b", "none")] == [2, 2, 2]
    # a label that is neither a class nor a negative is an error, exit 1
    assert main(["eval", "classify", str(d), "--json", "--model", str(tiny_model_file), "--workers", "1"]) == 1
    assert "neither model classes" in capsys.readouterr().err


def test_learn_normal_and_eval_anomaly(tmp_path, tiny_model_file, capsys):
    from streamer.detect.normality import NormalityModel

    d = tmp_path / "anom"
    (d / "train").mkdir(parents=True)
    (d / "test").mkdir()
    for k in range(2):
        write_scene(d / "train" / f"train{k}.mp4", 6.0, seed=0)
    n = write_scene(d / "test" / "test01.mp4", 6.0, anomaly=(2.0, 4.0), seed=0)
    with (d / "test" / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "frame", "anomalous"])
        for i in range(n):
            w.writerow(["test/test01.mp4", i, int(2.0 <= i / FPS < 4.0)])

    assert main(["learn-normal", "--camera", "gate", "--from", str(d / "train" / "train0.mp4"), "--minutes", "0.06",
                 "--hop", "0.25", "--out", str(tmp_path / "norm"), "--model", str(tiny_model_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    nm = NormalityModel.load(info["path"])
    assert info["camera"] == "gate" and info["objects"] > 0 and nm.camera == "gate"
    assert nm.windows == info["windows"] == 11  # 1 s windows every 0.25 s, ending by 3.6 s (--minutes 0.06)
    assert nm.threshold > 0

    assert main(["eval", "anomaly", str(d), "--json", "--model", str(tiny_model_file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == n and out["anomalous_frames"] == 20
    assert out["auc"] >= 0.9
