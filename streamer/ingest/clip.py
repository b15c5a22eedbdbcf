"""Whole clips to windows, through the same decode and windowing as live sources (training, eval)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamer.ingest.source import SourceReader, probe_geometry
from streamer.window import Window


def clip_windows(path: str | Path, spec, camera: str = "clip", hop: float = 0.5, objects: bool = False) -> list[Window]:
    """Every window of a clip (at least one: short clips are padded). `spec` is an engines.spec.ModelSpec;
    `objects`: the windows carry the moving objects of their frames (anomaly)."""
    reader = SourceReader(str(path), camera, replace(probe_geometry(spec, hop), objects=objects))
    return list(reader.windows())
