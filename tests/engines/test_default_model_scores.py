"""The bundled default model's scores are pinned: every runtime available here gives the scores recorded
in `data/default_model_scores.npz` (and so does the one graph TensorRT builds, run by ONNX Runtime) on real windows (the demo clip, every window) and on a random batch with
random masks. Recorded once from the model as trained (before its weights were re-packaged to share the
backbones' files, scripts/repack_weights.py), so a packaging change that alters a weight, or a backbone
file that no longer is the one the model was trained on, shows here.

Record again only when the model itself is retrained:

    python tests/engines/test_default_model_scores.py --record
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engines.export import random_feed
from engines.feed import windows_feed
from engines.runtime import open_runtime
from engines.spec import DEFAULT_MODEL, OUTPUT_NAMES, load_spec

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "streamer" / "assets" / "demo.mp4"
REFERENCE = Path(__file__).resolve().parent / "data" / "default_model_scores.npz"
# "one-graph": ONNX Runtime on the one graph, the pose model in front as a Scan (what TensorRT builds)
BACKENDS = ("onnxruntime-cpu", "torch", "one-graph")
TOLERANCE = 1e-5  # |now - recorded| <= TOLERANCE * (1 + |recorded|): float32 kernels may differ across CPUs


def feeds() -> dict[str, dict[str, np.ndarray]]:
    from streamer.ingest.clip import clip_windows

    spec = load_spec(DEFAULT_MODEL)
    windows = clip_windows(DEMO, spec)
    out = {f"demo{i}": windows_feed(windows[i : i + 8]) for i in range(0, len(windows), 8)}
    out["random"] = random_feed(spec, 4, seed=5, masks=False)
    return out


def scores(backend: str) -> dict[str, np.ndarray]:
    from engines.runtime.onnxruntime import OnnxRuntime

    got: dict[str, np.ndarray] = {}
    rt = OnnxRuntime(DEFAULT_MODEL, reuse_poses=False) if backend == "one-graph" else open_runtime(DEFAULT_MODEL, backend=backend, device="cpu")
    with rt:
        for name, feed in feeds().items():
            for out, value in rt.infer(feed).items():
                got[f"{backend}/{name}/{out}"] = value
    return got


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_default_models_scores_are_the_recorded_ones(backend: str) -> None:
    want = np.load(REFERENCE)
    got = scores(backend)
    assert sorted(got) == sorted(k for k in want.files if k.startswith(backend + "/"))
    for k, v in got.items():
        np.testing.assert_allclose(v, want[k], rtol=TOLERANCE, atol=TOLERANCE, err_msg=k)
    assert {k.rsplit("/", 1)[1] for k in got} == set(OUTPUT_NAMES)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit(__doc__)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **{k: v for b in BACKENDS for k, v in scores(b).items()})
    print(REFERENCE, REFERENCE.stat().st_size)
