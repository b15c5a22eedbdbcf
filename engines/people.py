"""What people do in a window, from MoveNet MultiPose on its frames: the features of the `fight` head.

MultiPose gives, per frame, up to 6 people: 17 COCO keypoints (y, x, score; fractions of the frame)
and a box (ymin, xmin, ymax, xmax, score). `PeopleFeatures` turns the poses of K frames into a few
numbers that say nothing about the camera or the scene: distances and speeds are divided by the body
height (box height), positions never enter, and the people of one frame are matched to the next by
the nearest box centre (in body heights).

Per window (all in `FEATURES` order):
- people: mean and max over frames of the number of people seen;
- near, overlap: the closest pair's centre distance in body heights (min over frames; 4 without a
  pair) and the largest box IoU of a pair;
- wrist, ankle, head, body: per step, the fastest matched person's part (body heights per second;
  wrists and ankles relative to the body centre), then the mean and max over steps;
- pose_change: mean keypoint speed relative to the body centre (how erratic the pose is), mean and max;
- accel: the largest change of relative wrist velocity between two steps (body heights per s^2);
- close_fast: the largest relative wrist speed of a person times exp(-their distance to the nearest other);
- wrist_2nd, pose_change_2nd: the same speeds of the second fastest person (a fight has two), and
  fast_people: how many people's poses change faster than FAST body heights per second.

Speeds go through log1p, so a few wild values do not dominate. Everything is plain tensor arithmetic
(gather, min, max, where): it exports to ONNX and runs the same on every backend, and it makes no host
tensor and reads nothing back to the host, so a CUDA graph can capture it (engines/runtime/torch.py).
"""

from __future__ import annotations

import torch
from torch import nn

from engines.pose import KEYPOINTS, PEOPLE

# chosen by source-grouped cross-validation on the fight training sources (not the validation split):
# 0.1 sees the small, blurred people of CCTV (0.2 and 0.3 lost 0.03 and 0.14 AP)
PERSON_MIN = 0.1  # box score of a person
KEYPOINT_MIN = 0.2  # keypoint score of a keypoint used in a speed
FAST = 0.5  # body heights per second of mean relative keypoint speed: a person moving their limbs
MATCH_MAX = 0.5  # body heights a person may move between two sampled frames and stay the same person
NO_PAIR = 4.0  # closest-pair distance when fewer than two people are seen
# COCO keypoints, as slices (not index lists, which would make a host tensor on every call)
HEAD = slice(0, 5)  # nose, eyes, ears
WRISTS = slice(9, 11)
ANKLES = slice(15, 17)
FEATURES = (
    "people_mean", "people_max", "near_min", "near_mean", "overlap_max",
    "wrist_mean", "wrist_max", "ankle_mean", "ankle_max", "head_mean", "head_max", "body_mean", "body_max",
    "pose_change_mean", "pose_change_max", "accel_max", "close_fast_max",
    "wrist_2nd_mean", "wrist_2nd_max", "pose_change_2nd_mean", "pose_change_2nd_max", "fast_people_mean",
)
# AudioSet classes (YAMNet) that a fight often sounds like: their logits are the head's audio cues
AUDIO_CUES = ("Shout", "Yell", "Screaming", "Crying, sobbing", "Groan", "Grunt", "Thump, thud", "Bang",
              "Slap, smack", "Whack, thwack", "Smash, crash")


def _pairwise_iou(box: torch.Tensor) -> torch.Tensor:
    """box [..., P, 4] (y0, x0, y1, x1) -> IoU [..., P, P]."""
    y0, x0, y1, x1 = box.unbind(-1)
    iy = (torch.minimum(y1[..., :, None], y1[..., None, :]) - torch.maximum(y0[..., :, None], y0[..., None, :])).clamp(min=0)
    ix = (torch.minimum(x1[..., :, None], x1[..., None, :]) - torch.maximum(x0[..., :, None], x0[..., None, :])).clamp(min=0)
    inter = iy * ix
    area = ((y1 - y0).clamp(min=0) * (x1 - x0).clamp(min=0))
    return inter / (area[..., :, None] + area[..., None, :] - inter + 1e-6)


class PeopleFeatures(nn.Module):
    """poses [B, K, 6, 56] of K frames `dt` seconds apart, on frames `aspect` = width / height
    -> features [B, len(FEATURES)]."""

    apart: torch.Tensor

    def __init__(self, dt: float, aspect: float) -> None:
        super().__init__()
        self.dt, self.aspect = float(dt), float(aspect)
        self.register_buffer("apart", 1.0 - torch.eye(PEOPLE), persistent=False)  # [P, P]: two different people

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        b, k = poses.shape[0], poses.shape[1]
        kp = poses[..., : KEYPOINTS * 3].reshape(b, k, PEOPLE, KEYPOINTS, 3)
        xy = torch.stack([kp[..., 1] * self.aspect, kp[..., 0]], dim=-1)  # [B, K, P, 17, 2], frame heights
        kconf = (kp[..., 2] > KEYPOINT_MIN).to(poses.dtype)  # [B, K, P, 17]
        box = poses[..., KEYPOINTS * 3 : KEYPOINTS * 3 + 4]
        seen = (poses[..., -1] > PERSON_MIN).to(poses.dtype)  # [B, K, P]
        height = (box[..., 2] - box[..., 0]).clamp(min=0.05)  # [B, K, P]
        centre = torch.stack([(box[..., 1] + box[..., 3]) * 0.5 * self.aspect, (box[..., 0] + box[..., 2]) * 0.5], -1)
        count = seen.sum(dim=2)  # [B, K]
        nearest, overlap = _pairs(box, seen, height, centre, self.apart)
        m = self._motion(xy, kconf, seen, height, centre)
        close_fast = (m["wrist_p"] * torch.exp(-nearest[:, :-1]) * m["matched"]).amax(dim=-1)
        near = nearest.amin(dim=-1)  # [B, K]
        lg = torch.log1p
        feats = [
            count.mean(1), count.amax(1), near.amin(1), near.mean(1), overlap.amax(1),
            *(f(lg(m[n]), 1) for n in ("wrist", "ankle", "head", "body", "pose_change") for f in (torch.mean, torch.amax)),
            lg(m["accel"]), lg(close_fast).amax(1),
            *(f(lg(m[n]), 1) for n in ("wrist_2nd", "change_2nd") for f in (torch.mean, torch.amax)),
            m["fast_people"].mean(1),
        ]
        return torch.stack(feats, dim=1)

    def _motion(self, xy: torch.Tensor, kconf: torch.Tensor, seen: torch.Tensor, height: torch.Tensor,
                centre: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each person of frame t matched to the nearest one of frame t + 1, and how fast their parts
        moved: per step [B, K-1] (the fastest person), and per person [B, K-1, P] where named `_p`."""
        c0, c1 = centre[:, :-1], centre[:, 1:]
        step = (c0[..., :, None, :] - c1[..., None, :, :]).norm(dim=-1) / height[:, :-1, :, None]
        step = torch.where(seen[:, 1:, None, :] > 0, step, torch.full_like(step, 1e3))
        cost, j = step.min(dim=-1)  # [B, K-1, P]
        matched = seen[:, :-1] * (cost < MATCH_MAX).to(xy.dtype)
        h0 = height[:, :-1]
        body_v = (_matched(c1, j) - c0) / (h0[..., None] * self.dt)  # [B, K-1, P, 2]
        rel_v = (_matched(xy[:, 1:], j) - xy[:, :-1]) / (h0[..., None, None] * self.dt) - body_v[..., None, :]
        both = kconf[:, :-1] * _matched(kconf[:, 1:], j) * matched[..., None]  # [B, K-1, P, 17]
        speed = rel_v.norm(dim=-1) * both  # relative to the body
        absolute = (rel_v + body_v[..., None, :]).norm(dim=-1) * both
        change_p = (speed.sum(-1) / both.sum(-1).clamp(min=1.0)) * matched
        wrist_p = speed[..., WRISTS].amax(dim=-1)
        out = {"matched": matched, "wrist_p": wrist_p, "wrist": wrist_p.amax(dim=-1),
               "ankle": speed[..., ANKLES].amax(dim=-1).amax(dim=-1),
               "head": absolute[..., HEAD].amax(dim=-1).amax(dim=-1),
               "body": (body_v.norm(dim=-1) * matched).amax(dim=-1), "pose_change": change_p.amax(dim=-1),
               "wrist_2nd": torch.topk(wrist_p, 2, dim=-1).values[..., 1],
               "change_2nd": torch.topk(change_p, 2, dim=-1).values[..., 1],
               "fast_people": (change_p > FAST).to(xy.dtype).sum(dim=-1)}
        out["accel"] = self._accel(rel_v, both, j) if j.shape[1] > 1 else torch.zeros_like(xy[:, 0, 0, 0, 0])
        return out

    def _accel(self, rel_v: torch.Tensor, both: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """[B]: the largest change of a person's relative wrist velocity between two steps (matched over both)."""
        w = WRISTS
        v1 = _matched(rel_v[:, 1:, :, w], j[:, :-1])
        ok = both[:, :-1, :, w] * _matched(both[:, 1:, :, w], j[:, :-1])
        return (((v1 - rel_v[:, :-1, :, w]).norm(dim=-1) * ok).amax(dim=-1) / self.dt).amax(dim=(1, 2))


def _matched(x: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """x [B, S, P, ...] of frame t + 1 -> x of the person each person of frame t was matched to (j [B, S, P])."""
    idx = j.reshape(*j.shape, *([1] * (x.dim() - 3))).expand(*j.shape, *x.shape[3:])
    return torch.gather(x, 2, idx)


def _pairs(box: torch.Tensor, seen: torch.Tensor, height: torch.Tensor, centre: torch.Tensor,
           apart: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: each person's distance to the nearest other in body heights [B, K, P] (NO_PAIR when
    alone), and the largest box IoU of a pair [B, K]. `apart`: 1 - the identity [P, P]."""
    pair = seen[..., :, None] * seen[..., None, :] * apart
    dist = (centre[..., :, None, :] - centre[..., None, :, :]).norm(dim=-1)
    mean_h = 0.5 * (height[..., :, None] + height[..., None, :])
    ndist = torch.where(pair > 0, dist / mean_h, torch.full_like(dist, NO_PAIR))
    return ndist.amin(dim=-1), (_pairwise_iou(box) * pair).amax(dim=(-1, -2))
