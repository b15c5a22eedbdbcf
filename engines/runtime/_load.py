"""Shared loading helpers of the runtimes."""

from __future__ import annotations

from pathlib import Path

from engines.errors import ModelLoadError
from engines.spec import ModelSpec, load_spec


def load_model_spec(model_path: str | Path) -> ModelSpec:
    """The sidecar spec of a model, with errors that name the files involved."""
    p = Path(model_path)
    if not p.is_file():
        raise ModelLoadError(f"model file not found: {p}")
    try:
        return load_spec(p)
    except (OSError, ValueError, TypeError) as e:
        raise ModelLoadError(f"cannot read the metadata of {p}: {e}") from e
