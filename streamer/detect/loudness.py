"""A window's sound level (dBFS: decibels relative to full scale, 0 = a full-scale square wave), and the
`loud` event it drives.

Computed once per window, in the ingest process where the samples are (streamer/ingest/windower.py),
and carried with the window's small fields to the main process; the audio itself is not shipped again.
A window without audio has no level (None), never -inf. Digital silence is FLOOR_DBFS.
"""

from __future__ import annotations

import math

import numpy as np

EVENT = "loud"  # the event the level opens over `detect.loudness.threshold_dbfs`
FLOOR_DBFS = -120.0  # the level of digital silence (and anything quieter)
NOT_HEARD = -math.inf  # what the event tracker is given for a window without audio: never loud (never exported)


def dbfs(amplitude: float) -> float:
    """A linear amplitude (1.0 = full scale) in dBFS, FLOOR_DBFS at the least."""
    return max(20.0 * math.log10(amplitude), FLOOR_DBFS) if amplitude > 0 else FLOOR_DBFS


def amplitude(level_dbfs: float) -> float:
    """dBFS back to a linear amplitude in [0, 1] (what a loud alert's `score` is)."""
    return min(10.0 ** (level_dbfs / 20.0), 1.0)


def level(pcm: np.ndarray) -> tuple[float, float]:
    """(RMS, peak) of float samples in [-1, 1], in dBFS, rounded to 0.01 dB."""
    if not pcm.size:
        return FLOOR_DBFS, FLOOR_DBFS
    x = pcm.astype(np.float64, copy=False)
    # a ufunc, not np.dot: BLAS would start its own threads in the ingest process, and they spin
    # (measured: 20% of a core per 720p camera, 8x the rest of the ingest beside decoding)
    rms = math.sqrt(float(np.mean(np.square(x))))
    peak = float(np.max(np.abs(x)))
    return round(dbfs(rms), 2), round(dbfs(peak), 2)
