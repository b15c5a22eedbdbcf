"""The engine runs the pose model once per distinct frame: consecutive windows share half their pose
frames, and the scores are the one graph's, on real windows of the demo clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.feed import windows_feed
from engines.pose import PoseRunner
from engines.runtime.onnxruntime import OnnxRuntime
from engines.spec import DEFAULT_MODEL, OUTPUT_EMBEDDING, OUTPUT_LOGITS, load_spec
from streamer.ingest.clip import clip_windows

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"
N = 12  # consecutive windows


@pytest.fixture(scope="module")
def windows() -> list:
    return clip_windows(DEMO, load_spec(DEFAULT_MODEL))[:N]


@pytest.fixture(scope="module")
def whole_graph(windows: list) -> list[dict[str, np.ndarray]]:
    """Each batch through the one graph (its Scan runs every pose frame of every window)."""
    with OnnxRuntime(DEFAULT_MODEL, reuse_poses=False) as rt:
        assert rt.pose is None and rt.pose_counts == (0, 0)
        return [rt.infer(windows_feed(windows[i : i + 3])) for i in range(0, N, 3)]


def test_reused_poses_give_the_one_graphs_scores(windows: list, whole_graph: list) -> None:
    with OnnxRuntime(DEFAULT_MODEL) as rt:
        got = [rt.infer(windows_feed(windows[i : i + 3])) for i in range(0, N, 3)]
        computed, reused = rt.pose_counts
    for a, b in zip(whole_graph, got):
        np.testing.assert_allclose(b[OUTPUT_LOGITS], a[OUTPUT_LOGITS], atol=1e-4)
        np.testing.assert_allclose(b[OUTPUT_EMBEDDING], a[OUTPUT_EMBEDDING], atol=1e-4)
    # every distinct sample time once: a window's pose frames at start + (i + 0.5) * frame spacing
    spec = load_spec(DEFAULT_MODEL)
    step = spec.window_seconds / spec.frames
    times = {round(w.start + (i + 0.5) * step, 6) for w in windows for i in rt._frame_index}
    k = len(rt._frame_index)
    assert computed == len(times) and computed + reused == N * k
    assert computed <= N * k * 0.6  # the default geometry shares half of each window's pose frames


def test_cached_poses_are_exactly_the_computed_ones(windows: list) -> None:
    frames = np.stack([w.video[i] for w in windows[:4] for i in (0, 4)])  # frame 4 of a window is frame 0 of the next
    fresh = PoseRunner(cache_frames=0).run(frames)
    cached = PoseRunner(cache_frames=16)
    out = cached.run(frames)
    assert np.array_equal(out, fresh)
    assert cached.reused == 3 and cached.computed == len(frames) - 3
    assert np.array_equal(cached.run(frames), fresh) and cached.computed == len(frames) - 3


def test_the_cache_is_bounded_and_audio_only_windows_cost_no_pose(windows: list) -> None:
    runner = PoseRunner(cache_frames=3)
    runner.run(np.stack([w.video[0] for w in windows[:6]]))
    assert len(runner._cache) == 3 and runner.computed == 6
    with OnnxRuntime(DEFAULT_MODEL) as rt:
        feed = windows_feed(windows[:2])
        feed["video_mask"][:] = 0.0
        out = rt.infer(feed)
        assert rt.pose_counts == (0, 0)
        assert np.isfinite(out[OUTPUT_LOGITS]).all()
