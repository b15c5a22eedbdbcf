"""Export the fusion network to ONNX (dynamic batch) and check that ONNX Runtime agrees with PyTorch.

Exporter: the TorchScript-based `torch.onnx.export(..., dynamo=False)`. It is deterministic, needs no
extra packages at run time and produces a plain opset-17 graph with a symbolic batch dimension. The
network is exported after its pose model (`poses` an input); the metadata names the pose model file and
its frames (engines.pose.pose_front), and the YAMNet weights are references into the backbone's own
weight file (engines.shared.share_weights): the model folder gets no second copy of either backbone.
Every op of the one graph (engines.pose.one_graph: the pose model in front, as TensorRT builds it,
subgraphs included) must be in TensorRT's ONNX support list (engines/trt_ops.json,
`engines.trt_support.tensorrt_op_report`). (`dynamo=True` uses the other exporter.)
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.errors import ExportError
from engines.shared import POSE_MODEL, share_weights
from engines.shared import model_files as model_files  # noqa: F401  (re-exported: the engine cache, `engine info`, train)
from engines.shared import model_sha256 as model_sha256  # noqa: F401
from engines.spec import (
    INPUT_AUDIO,
    INPUT_AUDIO_MASK,
    INPUT_NAMES,
    INPUT_VIDEO,
    INPUT_VIDEO_MASK,
    OUTPUT_LOGITS,
    OUTPUT_NAMES,
    ModelSpec,
    save_spec,
)
from engines.trt_support import tensorrt_op_report

if TYPE_CHECKING:
    from engines.model import FusionNet

log = logging.getLogger(__name__)

def random_feed(spec: ModelSpec, batch: int, seed: int = 0, masks: bool = True) -> dict[str, np.ndarray]:
    """A valid random feed: uint8 video, audio in [-1, 1], masks of ones (or random 0/1)."""
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {
        INPUT_VIDEO: rng.integers(0, 256, (batch, spec.frames, spec.height, spec.width, 3), dtype=np.uint8),
        INPUT_AUDIO: rng.uniform(-1, 1, (batch, spec.samples)).astype(np.float32),
        INPUT_VIDEO_MASK: np.ones(batch, np.float32),
        INPUT_AUDIO_MASK: np.ones(batch, np.float32),
    }
    if not masks:
        feed[INPUT_VIDEO_MASK] = rng.integers(0, 2, batch).astype(np.float32)
        feed[INPUT_AUDIO_MASK] = rng.integers(0, 2, batch).astype(np.float32)
    return feed


def export_onnx(
    model: FusionNet,
    spec: ModelSpec,
    path: str | Path,
    opset: int = 17,
    dynamo: bool = False,
) -> Path:
    """Write `path` (ONNX, dynamic batch axis, names from engines.spec; the graph after the pose model,
    reading the backbones' files in `backbones/` beside it) and its `<name>.json` sidecar."""
    import torch

    from engines.model import WithPoses
    from engines.pose import PEOPLE, POSE_KEY, POSE_WIDTH, POSES_INPUT, pose_metadata
    from engines.shared import read_graph, save_graph, set_metadata

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    feed = random_feed(spec, batch=2)
    k = len(model.arch.pose_frames)
    poses = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (2, k, PEOPLE, POSE_WIDTH)).astype(np.float32))
    args = (*(torch.from_numpy(feed[n]) for n in INPUT_NAMES), poses)
    names = [*INPUT_NAMES, POSES_INPUT]
    after_pose = WithPoses(model).eval()
    try:
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1024)
            shapes = {n: {0: batch} for n in names}
            prog = torch.onnx.export(
                after_pose, args, input_names=names, output_names=list(OUTPUT_NAMES),
                opset_version=opset, dynamo=True, dynamic_shapes=shapes, optimize=True,
            )
            if prog is None:
                raise ExportError("the dynamo exporter returned no program")
            prog.save(str(path))
        else:
            axes = {n: {0: "batch"} for n in (*names, *OUTPUT_NAMES)}
            with torch.no_grad(), warnings.catch_warnings():
                # torch >= 2.9 marks this exporter deprecated; it is kept here on purpose (module doc)
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    after_pose, args, str(path), input_names=names,
                    output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset,
                    do_constant_folding=True, dynamo=False,
                )
    except Exception as e:  # the exporters raise many unrelated types
        raise ExportError(f"ONNX export to {path} failed: {e}") from e
    m = read_graph(path)
    set_metadata(m, POSE_KEY, pose_metadata(model.arch.pose_frames))
    save_graph(m, path)
    share_weights(path, extra=(POSE_MODEL,))
    save_spec(spec, path)
    report = tensorrt_op_report(path)
    if report["unsupported"]:
        raise ExportError(f"the exported graph is outside TensorRT's ONNX support (engines/trt_ops.json): {report['unsupported']}")
    ops = report["ops"]
    log.info("exported %s (opset %d, %d ops: %s)", path, opset, len(ops), ", ".join(sorted(ops)))
    return path


def graph_ops(path: str | Path) -> set[str]:
    """Every op of the one graph (engines.pose.one_graph), subgraphs (the pose model's Scan body) included."""
    return set(tensorrt_op_report(path)["ops"])


@dataclass(frozen=True)
class ParityReport:
    batch: int
    max_abs_diff_logits: float
    max_abs_diff_embedding: float


def check_parity(
    model: FusionNet,
    onnx_path: str | Path,
    spec: ModelSpec,
    batches: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    seed: int = 0,
) -> list[ParityReport]:
    """Run random windows through PyTorch and ONNX Runtime (CPU) on the one graph (the pose model in
    front, engines.pose.one_graph); raise ExportError if logits differ by more than `atol` times the
    largest |logit| (at least 1). Returns one report per batch size."""
    import onnxruntime as ort
    import torch

    from engines.pose import one_graph

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(one_graph(onnx_path).SerializeToString(), so, providers=["CPUExecutionProvider"])
    model = model.eval()
    reports = []
    for i, b in enumerate(batches):
        feed = random_feed(spec, b, seed=seed + i, masks=i % 2 == 0)
        with torch.no_grad():
            t_logits, t_emb = model(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES))
        o_logits, o_emb = sess.run(list(OUTPUT_NAMES), feed)
        r = ParityReport(
            b,
            float(np.abs(t_logits.numpy() - o_logits).max()),
            float(np.abs(t_emb.numpy() - o_emb).max()),
        )
        if o_logits.shape != (b, len(spec.classes)):
            raise ExportError(f"ONNX {OUTPUT_LOGITS} has shape {o_logits.shape}, expected {(b, len(spec.classes))}")
        scale = max(1.0, float(np.abs(t_logits.numpy()).max()))  # float32 error grows with the logits
        if not r.max_abs_diff_logits <= atol * scale:
            raise ExportError(
                f"ONNX Runtime and PyTorch disagree at batch {b}: max |diff| of logits "
                f"{r.max_abs_diff_logits:.3g} > {atol * scale:.3g}"
            )
        reports.append(r)
    return reports


def save_torch_weights(model: FusionNet, onnx_path: str | Path) -> Path:
    """`<name>.pt` beside the ONNX file: {"arch": dict, "state_dict": ...} for the torch backend (the
    trained part only: the backbones load from engines/weights/backbones)."""
    import torch

    p = Path(onnx_path).with_suffix(".pt")
    torch.save({"arch": model.arch.to_dict(), "state_dict": model.trained_state()}, p)
    return p


def split_weights(onnx_path: str | Path) -> list[Path]:
    """The last step of an export, again (export_onnx ends with it; idempotent): every YAMNet weight of
    the graph a reference into `backbones/yamnet.bin` (engines.shared.share_weights). Returns
    engines.shared.model_files. An onnx.load + onnx.save after it puts the weights back inline."""
    return share_weights(onnx_path, extra=(POSE_MODEL,))

