"""The fight head's eyes: MoveNet MultiPose on real frames, and what people do from its poses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engines.people import FEATURES, PeopleFeatures
from engines.pose import KEYPOINTS, PEOPLE, POSE_WIDTH, PoseRunner
from engines.spec import DEFAULT_MODEL, load_spec
from streamer.ingest.clip import clip_windows

DEMO = Path(__file__).resolve().parents[2] / "streamer" / "assets" / "demo.mp4"
DT, ASPECT = 0.125, 1.6


def person(cx: float, cy: float, h: float, wrist_dx: float = 0.0) -> np.ndarray:
    """One MultiPose row: a standing figure of height h (frame heights) centred at (cx, cy) in frame
    fractions, its wrists moved sideways by wrist_dx (frame heights)."""
    row = np.zeros(POSE_WIDTH, np.float32)
    kp = row[: KEYPOINTS * 3].reshape(KEYPOINTS, 3)
    for k in range(KEYPOINTS):
        kp[k] = (cy - h / 2 + h * k / (KEYPOINTS - 1), cx, 0.9)
    for w in (9, 10):
        kp[w, 1] += wrist_dx / ASPECT
    row[KEYPOINTS * 3 :] = (cy - h / 2, cx - 0.2 * h / ASPECT, cy + h / 2, cx + 0.2 * h / ASPECT, 0.9)
    return row


def frames(rows_per_frame: list[list[np.ndarray]]) -> torch.Tensor:
    out = np.zeros((1, len(rows_per_frame), PEOPLE, POSE_WIDTH), np.float32)
    for t, rows in enumerate(rows_per_frame):
        for p, r in enumerate(rows):
            out[0, t, p] = r
    return torch.from_numpy(out)


def feats(poses: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        return dict(zip(FEATURES, PeopleFeatures(DT, ASPECT)(poses)[0].tolist()))


def scuffle(cx: float, cy: float, h: float) -> torch.Tensor:
    """Two people side by side whose wrists swing back and forth by a third of their height."""
    return frames([[person(cx, cy, h, s * h / 3), person(cx + 0.3 * h / ASPECT, cy, h, -s * h / 3)]
                   for s in (1, -1, 1, -1)])


def test_two_close_people_swinging_their_arms_score_above_two_standing():
    still = feats(frames([[person(0.4, 0.5, 0.4), person(0.52, 0.5, 0.4)]] * 4))
    moving = feats(scuffle(0.4, 0.5, 0.4))
    assert still["people_max"] == moving["people_max"] == 2
    assert still["wrist_max"] == 0 and still["close_fast_max"] == 0
    assert moving["wrist_max"] > 1.0 and moving["close_fast_max"] > 0.5 and moving["accel_max"] > 1.0
    assert moving["wrist_2nd_max"] > 1.0 and moving["fast_people_mean"] == 2  # both of them
    assert moving["body_max"] < 0.05  # their bodies stayed where they were: only the limbs moved
    assert moving["near_min"] < 0.5


def test_features_do_not_depend_on_where_or_how_big_the_people_are():
    """Distances and speeds are in body heights: the same scuffle elsewhere and at half the size gives
    the same numbers."""
    a = feats(scuffle(0.3, 0.5, 0.4))
    b = feats(scuffle(0.6, 0.3, 0.2))
    for name in FEATURES:
        assert abs(a[name] - b[name]) < 1e-3 * max(1.0, abs(a[name])), name


def test_nobody_gives_zero_motion_and_no_pair():
    f = feats(frames([[], [], [], []]))
    assert f["people_max"] == 0 and f["wrist_max"] == 0 and f["near_min"] == 4.0


def test_pose_model_finds_the_people_of_a_real_cctv_frame():
    """The demo clip's fight (real CCTV, a street at night): MultiPose sees a person in every frame (best
    scores 0.30-0.42 here; PERSON_MIN is 0.1) and two in some, with boxes of people-like size."""
    spec = load_spec(DEFAULT_MODEL)
    window = [w for w in clip_windows(DEMO, spec) if w.start >= 5.0][0]
    poses = PoseRunner().run(window.video[2:6])
    assert poses.shape == (4, PEOPLE, POSE_WIDTH)
    scores = poses[..., -1]
    assert (scores.max(axis=1) > 0.25).all() and ((scores > 0.1).sum(axis=1) >= 2).any(), scores
    top = poses[0, scores[0].argmax()]
    y0, x0, y1, x1 = top[KEYPOINTS * 3 : KEYPOINTS * 3 + 4]
    assert 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1 and y1 - y0 > 0.1
