"""Exceptions of engines. Each also inherits the matching built-in and says whether it is recoverable."""

from __future__ import annotations


class StreamerError(Exception):
    """The root of every error of the project (streamer.errors re-exports it): defined here, in the
    lowest layer, so that engines/ needs nothing from streamer/."""

    recoverable = False


class EngineError(StreamerError, RuntimeError):
    """Base of the engine's own errors (under streamer's root, StreamerError)."""


class BackendUnavailable(EngineError, ImportError):
    """The requested backend's libraries (or device) are missing. Not recoverable here: install or pick
    another backend."""


class ModelLoadError(EngineError, OSError):
    """A model file or its sidecar is missing or unreadable. Not recoverable: fix the path or re-export."""


class InputError(EngineError, ValueError):
    """A feed does not match the model's inputs (names, dtypes, shapes, batch). Not recoverable for that
    feed: the caller built it wrong."""


class InferenceError(EngineError):
    """The backend failed while running a valid feed. Possibly recoverable: the engine process may be
    restarted."""

    recoverable = True


class ExportError(EngineError):
    """Exporting to ONNX failed, or the exported graph disagrees with the PyTorch model."""
