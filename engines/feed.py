"""The model input built from windows: one batch per call, in INPUT_NAMES order."""

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
