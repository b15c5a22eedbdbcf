"""The model's input built from windows, and its logits as scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from engines.spec import INPUT_AUDIO, INPUT_AUDIO_MASK, INPUT_VIDEO, INPUT_VIDEO_MASK


class WindowLike(Protocol):
    """What the model needs of a window (streamer.window.Window has these fields)."""

    video: np.ndarray
    audio: np.ndarray
    video_mask: float
    audio_mask: float


def windows_feed(windows: Sequence[WindowLike]) -> dict[str, np.ndarray]:
    """uint8 video, float32 audio and the two masks of `windows`, stacked along the batch axis."""
    return {
        INPUT_VIDEO: np.stack([w.video for w in windows]).astype(np.uint8, copy=False),
        INPUT_AUDIO: np.stack([w.audio for w in windows]).astype(np.float32, copy=False),
        INPUT_VIDEO_MASK: np.array([w.video_mask for w in windows], np.float32),
        INPUT_AUDIO_MASK: np.array([w.audio_mask for w in windows], np.float32),
    }


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Event scores in [0, 1] from `event_logits` (in float64: no overflow warning for large logits)."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
