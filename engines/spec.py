"""The engine contract: tensor names, window geometry and the model's sidecar metadata.

Every backend, the exporter and ingest read names and shapes from here, so they are fixed in one place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

INPUT_VIDEO = "video"  # uint8 [B, T, H, W, 3] RGB
INPUT_AUDIO = "audio"  # float32 [B, S] mono, SAMPLE_RATE Hz, in [-1, 1]
INPUT_VIDEO_MASK = "video_mask"  # float32 [B]
INPUT_AUDIO_MASK = "audio_mask"  # float32 [B]
INPUT_NAMES = (INPUT_VIDEO, INPUT_AUDIO, INPUT_VIDEO_MASK, INPUT_AUDIO_MASK)

OUTPUT_LOGITS = "event_logits"  # float32 [B, K]
OUTPUT_EMBEDDING = "embedding"  # float32 [B, D]
OUTPUT_NAMES = (OUTPUT_LOGITS, OUTPUT_EMBEDDING)

SAMPLE_RATE = 16000
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "fusion.onnx"
BACKBONE_DIR = WEIGHTS_DIR / "backbones"  # pretrained backbones, derived by scripts/derive_*.py
POSE_ONNX = BACKBONE_DIR / "movenet_multipose.onnx"


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and what it outputs; stored beside the ONNX file as `<name>.json`."""

    name: str = "fusion"
    version: str = "0"
    frames: int = 8  # T
    height: int = 160
    width: int = 256
    window_seconds: float = 1.0
    sample_rate: int = SAMPLE_RATE
    classes: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    embedding_dim: int = 0
    # class -> the input it needs: "audio", "video" or "any" (absent: "any")
    modality: dict[str, str] = field(default_factory=dict)
    # classes taken from the audio backbone: class -> indices of its AudioSet classes (max of their logits)
    audioset: dict[str, list[int]] = field(default_factory=dict)
    # class -> the AudioSet display names behind it (documentation of `audioset`)
    audioset_names: dict[str, list[str]] = field(default_factory=dict)
    # where things sit in the `embedding` output (engines.model.embedding_layout); empty: all learned
    embedding_layout: dict = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def to_json(self) -> str:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        known = {f for f in cls.__dataclass_fields__}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown model metadata keys: {sorted(extra)}")
        d = dict(d)
        d["classes"] = tuple(d.get("classes", ()))
        return cls(**d)


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def load_spec(model_path: str | Path) -> ModelSpec:
    """Read the metadata file that sits beside an ONNX model (`fusion.onnx` -> `fusion.json`)."""
    p = sidecar_path(model_path)
    if not p.is_file():
        raise FileNotFoundError(f"model metadata not found: {p} (expected beside {model_path})")
    return ModelSpec.from_dict(json.loads(p.read_text()))


def save_spec(spec: ModelSpec, model_path: str | Path) -> Path:
    p = sidecar_path(model_path)
    p.write_text(spec.to_json() + "\n")
    return p
