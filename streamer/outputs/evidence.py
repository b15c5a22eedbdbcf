"""Evidence stored with an alert: the window's keyframe as JPEG and its audio as 16-bit WAV."""

from __future__ import annotations

import io
import wave

import cv2
import numpy as np


def jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    return buf.tobytes()


def wav(pcm: np.ndarray, rate: int) -> bytes:
    """Mono float32 in [-1, 1] -> a WAV file (16-bit PCM). One second at 16 kHz is 32 KB."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def keys(prefix: str, alert_id: str) -> dict[str, str]:
    return {"keyframe": f"{prefix}:{alert_id}:jpg", "audio": f"{prefix}:{alert_id}:wav"}
