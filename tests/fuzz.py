"""Hypothesis strategies and settings shared by the fuzz tests: bounded (a few seconds a property),
no example database written beside the checkout, and derandomized: CI tries the same examples on every
run (a failure found once is pinned with @example); run with --hypothesis-seed=random to explore."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from streamer.config import CameraConfig

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

URLS = ["rtsp://u:pw@10.0.0.5/s", "http://h/x.m3u8", "ftp://h/x", "/etc/shadow", "file:///etc/passwd", "/dev/video0",
        "concat:/a|/b", "mic:", "mic:1", "", "rtsp://[::1", "rtsp://h:99999/x", "x" * 5000, "a\x00b", "file://", "~", "."]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from([1e308, 1e-320, -0.0]),
                    st.text(max_size=20), st.sampled_from(URLS))
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)


CAMERA = st.dictionaries(st.sampled_from(sorted(CameraConfig.model_fields)) | st.text(max_size=8), VALUES, max_size=8)
