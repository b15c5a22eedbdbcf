"""The fusion engine: model, export, runtimes, training. Importing this package is cheap (no torch)."""

from engines.spec import DEFAULT_MODEL, ModelSpec, load_spec

__all__ = ["DEFAULT_MODEL", "ModelSpec", "load_spec"]
