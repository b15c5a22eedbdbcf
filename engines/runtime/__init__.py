"""Engine runtimes behind one interface; `open_runtime` picks the backend. Backends import lazily."""

from engines.runtime.base import Runtime, spec_inputs
from engines.runtime.select import open_runtime

__all__ = ["Runtime", "open_runtime", "spec_inputs"]
