"""Augmentations that fit surveillance: numpy (and OpenCV for video), applied per window in training.

Audio: events mixed into backgrounds at random signal-to-noise ratios, gain, time shift, and reverberation
through a synthetic room impulse response (exponentially decaying noise). Video: one random crop per
window (resized back), horizontal flip, brightness/contrast, blur, JPEG compression, time reversal.
Every function takes the generator it draws from, so a seeded run is reproducible.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a.astype(np.float64) ** 2)) + 1e-8)


def mix_at_snr(event: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """`event` + `background` scaled so that rms(event) / rms(background) is `snr_db` dB.

    A silent event (rms ~ 0) is returned unchanged: there is nothing to set a ratio against."""
    e = rms(event)
    if e < 1e-5:
        return event.copy()
    b = rms(background)
    scale = e / (b * 10 ** (snr_db / 20))
    return (event + background * scale).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rt60: float, sample_rate: int = SAMPLE_RATE,
                  max_seconds: float = 0.6) -> np.ndarray:
    """A room impulse response: direct path, then decaying white noise (60 dB down after `rt60` s)."""
    n = max(2, int(min(rt60, max_seconds) * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    delay = int(rng.uniform(0.002, 0.02) * sample_rate)  # first reflections arrive a little later
    tail[:delay] = 0.0
    tail *= rng.uniform(0.2, 0.7) / max(np.sqrt(np.sum(tail**2)), 1e-8)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(a: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with `rir` (same length out, the tail cut), keeping the input's rms."""
    n = len(a) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(rir, size), size)[: len(a)]
    y *= rms(a) / rms(y)
    return y.astype(np.float32)


def augment_audio(a: np.ndarray, rng: np.random.Generator, backgrounds: list[np.ndarray] | None = None,
                  p_background: float = 0.5, snr_db: tuple[float, float] = (0.0, 20.0),
                  p_reverb: float = 0.3, gain_db: tuple[float, float] = (-18.0, 6.0),
                  p_shift: float = 0.5) -> np.ndarray:
    """One training view of a window of audio in [-1, 1] (float32 [S]); the label is unchanged."""
    a = a.astype(np.float32, copy=True)
    if p_shift and rng.random() < p_shift:
        a = np.roll(a, int(rng.integers(0, len(a))))
    if p_reverb and rng.random() < p_reverb:
        a = reverberate(a, synthetic_rir(rng, float(rng.uniform(0.15, 0.9))))
    if backgrounds and rng.random() < p_background:
        b = backgrounds[int(rng.integers(0, len(backgrounds)))]
        if rng.random() < 0.5:
            b = np.roll(b, int(rng.integers(0, len(b))))
        a = mix_at_snr(a, b, float(rng.uniform(*snr_db)))
    a *= 10 ** (rng.uniform(*gain_db) / 20)
    np.clip(a, -1.0, 1.0, out=a)
    return a


def augment_video(v: np.ndarray, rng: np.random.Generator, p_crop: float = 0.7, min_scale: float = 0.6,
                  p_flip: float = 0.5, p_color: float = 0.7, p_blur: float = 0.2, p_jpeg: float = 0.2,
                  p_reverse: float = 0.2) -> np.ndarray:
    """One training view of a window of video (uint8 [T, H, W, 3]); the same transform for every frame."""
    import cv2

    t, h, w, _ = v.shape
    out = v
    if rng.random() < p_crop:
        s = float(rng.uniform(min_scale, 1.0))
        ch = max(8, int(h * s * rng.uniform(0.9, 1.1)))
        cw = max(8, int(w * s * rng.uniform(0.9, 1.1)))
        ch, cw = min(ch, h), min(cw, w)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out = np.stack([cv2.resize(f[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
                        for f in out])
    if rng.random() < p_flip:
        out = out[:, :, ::-1]
    if rng.random() < p_reverse:
        out = out[::-1]
    if rng.random() < p_color:
        gain = rng.uniform(0.7, 1.3)  # contrast
        bias = rng.uniform(-30, 30)  # brightness
        mean = out.mean()
        f = (out.astype(np.float32) - mean) * gain + mean + bias
        if rng.random() < 0.2:  # desaturate (night / grey cameras)
            f = np.repeat(f.mean(axis=3, keepdims=True), 3, axis=3)
        out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < p_blur:
        k = int(rng.choice([3, 5]))
        out = np.stack([cv2.GaussianBlur(np.ascontiguousarray(f), (k, k), 0) for f in out])
    if rng.random() < p_jpeg:
        q = int(rng.integers(15, 60))
        frames: list[np.ndarray] = []
        for f in out:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(f), [cv2.IMWRITE_JPEG_QUALITY, q])
            dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else None
            frames.append(dec if dec is not None else f)
        out = np.stack(frames)
    return np.ascontiguousarray(out)
