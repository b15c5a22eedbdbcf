"""MoveNet MultiPose, the video side's eyes: up to 6 people per frame, each a box and 17 keypoints.

The derived ONNX file (`engines/weights/backbones/movenet_multipose.onnx`, scripts/derive_pose.py)
takes one int32 RGB frame [1, H, W, 3] of any size (the window's frames as they are) and gives
[1, 6, 56]: per person 17 x (y, x, score) in fractions of the frame, then (ymin, xmin, ymax, xmax,
score). Its graph has batch 1 and its own post-processing, so frames go through it one at a time.

The fusion graph is exported after the pose model (`poses` an input); its metadata (`POSE_KEY`) names the
pose model file beside it (`backbones/movenet_multipose.onnx`, engines/shared.py) and the frames of the
window it runs on (`pose_front`). The pose model's weights are in that one file, for every runtime:

- `PoseRunner`: the pose graph run on frames, each distinct frame once (ONNX Runtime and torch backends).
  Consecutive windows overlap (1 s windows, 0.5 s hop) and the pose frames are spaced so that a window's
  first frames are the last ones of the window before, so every other pose frame of a stream has been
  seen already; the runner keeps the poses of recent frames keyed by the frames' pixels (a 128-bit
  BLAKE2b digest), so a reused pose is exactly the one a new run would give, whatever camera, restart or
  timestamp it comes from.
- `one_graph` / `one_graph_file`: the pose graph put in front of the fusion graph (`attach_pose`), as a
  Scan over the sampled frames of the windows that have video (`video_mask` > 0; the others get no
  people, and their video classes are masked anyway), so the model is one graph from the window's pixels
  and audio to the event scores, and audio-only windows cost no pose. TensorRT builds that one graph
  (engines/build.py), made when the engine is built.
- `detach_pose`: older exports carry the one graph in their file: the inverse of attach_pose, at load time.

Imports onnxruntime and numpy only (onnx for the graph surgery), never torch: the CPU serving path uses it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import ModelLoadError
from engines.shared import POSE_MODEL, SHARED_KEY, check_shared_files, read_graph, set_metadata
from engines.spec import POSE_ONNX

PEOPLE = 6  # MultiPose's people per frame
KEYPOINTS = 17
POSE_WIDTH = KEYPOINTS * 3 + 5  # [y, x, score] x 17, then [ymin, xmin, ymax, xmax, score]
POSES_INPUT = "poses"  # the exported graph's input after the pose model: [B, K, 6, 56]
POSE_KEY = "streamer.pose"  # ONNX metadata (JSON): {"model": the pose model file beside it, "frames": its frames}
FRONT = "pose_"  # the prefix of every node and constant attach_pose adds in front of the graph
CACHE_FRAMES = 4096  # poses kept (~1.4 kB each): 4 per camera cover the overlap, so ~1000 cameras


class PoseRunner:
    """uint8 frames [N, H, W, 3] -> float32 poses [N, 6, 56]. `model`: an ONNX file or serialized graph
    whose input is one frame, [1, H, W, 3] or [H, W, 3]. `cache_frames`: poses kept (0: none)."""

    def __init__(self, model: Path | bytes = POSE_ONNX, threads: int = 0, providers: tuple[Any, ...] = ("CPUExecutionProvider",),
                 cache_frames: int = CACHE_FRAMES) -> None:
        self.model, self.threads, self.providers = model, threads, providers
        self.cache_frames = cache_frames
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._sess: Any = None
        self._input = ("", False)  # the graph's input name, and whether it takes a batch axis
        self.computed = 0  # frames run through the pose graph
        self.reused = 0  # frames whose poses came from the cache

    def session(self) -> Any:
        if self._sess is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = self.threads
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            model = self.model if isinstance(self.model, bytes) else str(self.model)
            self._sess = ort.InferenceSession(model, so, providers=list(self.providers))
            inp = self._sess.get_inputs()[0]
            self._input = (inp.name, len(inp.shape) == 4)
        return self._sess

    def _run_one(self, frame: np.ndarray) -> np.ndarray:
        sess = self.session()
        name, batched = self._input
        x = frame.astype(np.int32)
        self.computed += 1
        return sess.run(None, {name: x[None] if batched else x})[0].reshape(PEOPLE, POSE_WIDTH)

    def run(self, frames: np.ndarray) -> np.ndarray:
        out = np.zeros((len(frames), PEOPLE, POSE_WIDTH), np.float32)
        for i, frame in enumerate(frames):
            out[i] = self._pose(np.ascontiguousarray(frame))
        return out

    def _pose(self, frame: np.ndarray) -> np.ndarray:
        if not self.cache_frames:
            return self._run_one(frame)
        key = hashlib.blake2b(frame.data, digest_size=16).digest() + bytes(str(frame.shape), "ascii")
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.reused += 1
            return hit
        pose = self._run_one(frame)
        self._cache[key] = pose
        if len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return pose

    def poses(self, video: np.ndarray, video_mask: np.ndarray, frame_index: tuple[int, ...]) -> np.ndarray:
        """uint8 windows [B, T, H, W, 3] -> poses [B, K, 6, 56] of frames `frame_index`; zeros (no people)
        for the windows whose `video_mask` is 0, which are not run."""
        out = np.zeros((len(video), len(frame_index), PEOPLE, POSE_WIDTH), np.float32)
        for b in np.flatnonzero(np.asarray(video_mask).reshape(-1) > 0):
            for j, f in enumerate(frame_index):  # each frame a view of the batch: no copy unless it is strided
                out[b, j] = self._pose(np.ascontiguousarray(video[b, f]))
        return out


def _prefixed(graph: Any, prefix: str) -> None:
    """Rename every value of `graph` (not its subgraphs) with `prefix`, so none can clash with the outer graph."""
    def ren(name: str) -> str:
        return prefix + name if name else name

    for n in graph.node:
        n.input[:] = [ren(x) for x in n.input]
        n.output[:] = [ren(x) for x in n.output]
        n.name = ren(n.name)
    for coll in (graph.initializer, graph.input, graph.output, graph.value_info):
        for v in coll:
            v.name = ren(v.name)


def _frame_body(pose: Any) -> Any:
    """The pose graph as a Scan body: one int32 frame [H, W, 3] in (unsqueezed to its batch of 1), its
    [1, 6, 56] out; every name prefixed so none clashes with the outer graph."""
    from onnx import TensorProto, helper, numpy_helper

    body = pose.graph
    _prefixed(body, "pose/")
    (p_in,) = body.input
    body.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "pose/axis0"))
    nodes = [helper.make_node("Unsqueeze", ["pose/frame", "pose/axis0"], [p_in.name], name="pose/unsqueeze"), *body.node]
    del body.node[:]
    body.node.extend(nodes)
    del body.input[:]
    body.input.append(helper.make_tensor_value_info("pose/frame", TensorProto.INT32, [None, None, 3]))
    body.name = "pose"
    return body


def _front(body: Any, spec: Any, frame_index: tuple[int, ...]) -> tuple[list[Any], list[Any]]:
    """(nodes, initializers) that compute `poses` [B, K, 6, 56] from `video` and `video_mask`: the rows
    with video, their frames `frame_index`, the Scan, and zeros scattered back for the other rows."""
    from onnx import TensorProto, numpy_helper
    from onnx.helper import make_node as node

    from engines.spec import INPUT_VIDEO, INPUT_VIDEO_MASK

    k = len(frame_index)
    consts = {"pose_frame_index": np.array(frame_index, np.int64), "pose_zero": np.array(0.0, np.float32),
              "pose_frames_shape": np.array([-1, spec.height, spec.width, 3], np.int64),
              "pose_found_shape": np.array([-1, k, PEOPLE, POSE_WIDTH], np.int64),
              "pose_row_shape": np.array([k, PEOPLE, POSE_WIDTH], np.int64), "pose_axis0": np.array([0], np.int64),
              "pose_axis1": np.array([1], np.int64), "pose_one": np.array([1], np.int64),
              "pose_row0": np.zeros((1, 1), np.int64)}
    nodes = [
        # rows with video: [n, 1]
        node("Greater", [INPUT_VIDEO_MASK, "pose_zero"], ["pose_has_video"], name="pose_has_video"),
        node("NonZero", ["pose_has_video"], ["pose_rows_t"], name="pose_rows"),
        node("Transpose", ["pose_rows_t"], ["pose_rows_found"], perm=[1, 0], name="pose_rows_transpose"),
        # at least one row (a Scan over nothing fails): row 0 when no window has video; its poses land on
        # a window whose video is masked, so nothing reads them
        node("Concat", ["pose_rows_found", "pose_row0"], ["pose_rows_or_0"], axis=0, name="pose_rows_or_0"),
        node("Shape", ["pose_rows_found"], ["pose_n"], start=0, end=1, name="pose_n"),
        node("Max", ["pose_n", "pose_one"], ["pose_n1"], name="pose_n1"),
        node("Slice", ["pose_rows_or_0", "pose_axis0", "pose_n1", "pose_axis0"], ["pose_rows"], name="pose_rows_used"),
        node("Squeeze", ["pose_rows", "pose_axis1"], ["pose_rows_1d"], name="pose_rows_1d"),
        node("Gather", [INPUT_VIDEO, "pose_rows_1d"], ["pose_windows"], axis=0, name="pose_windows"),
        node("Gather", ["pose_windows", "pose_frame_index"], ["pose_frames_u8"], axis=1, name="pose_gather"),
        node("Reshape", ["pose_frames_u8", "pose_frames_shape"], ["pose_frames_4d"], name="pose_flatten"),
        node("Cast", ["pose_frames_4d"], ["pose_frames"], to=TensorProto.INT32, name="pose_cast"),
        node("Scan", ["pose_frames"], ["pose_each"], body=body, num_scan_inputs=1, name="pose_scan"),
        node("Reshape", ["pose_each", "pose_found_shape"], ["pose_found"], name="pose_unflatten"),
        # back into a [B, K, 6, 56] of zeros at the rows with video
        node("Shape", [INPUT_VIDEO_MASK], ["pose_batch"], name="pose_batch"),
        node("Concat", ["pose_batch", "pose_row_shape"], ["pose_full_shape"], axis=0, name="pose_full_shape"),
        node("ConstantOfShape", ["pose_full_shape"], ["pose_none"], name="pose_none",
             value=numpy_helper.from_array(np.zeros(1, np.float32))),
        node("ScatterND", ["pose_none", "pose_rows", "pose_found"], [POSES_INPUT], name="pose_scatter"),
    ]
    return nodes, [numpy_helper.from_array(v, n) for n, v in consts.items()]


def attach_pose(model: Any, pose: Any, spec: Any, frame_index: tuple[int, ...]) -> Any:
    """The one graph: `model` (onnx.ModelProto, weights loaded) with its input `poses` [B, K, 6, 56]
    replaced by the `pose` model run on frames `frame_index` of the windows of its `video` input
    [B, T, H, W, 3] whose `video_mask` is > 0 (zeros for the others). In place; returns `model`.
    `spec` (engines.spec.ModelSpec) gives T, H, W. The metadata that points at files beside the model
    (the pose model, the shared weights) goes: the one graph carries them inside."""
    import onnx
    from onnx import TensorProto, helper

    from engines.spec import INPUT_NAMES, INPUT_VIDEO

    g = model.graph
    if not any(i.name == INPUT_VIDEO for i in g.input):  # the exporter drops an input no torch op reads
        g.input.insert(0, helper.make_tensor_value_info(INPUT_VIDEO, TensorProto.UINT8,
                                                        ["batch", spec.frames, spec.height, spec.width, 3]))
    front, consts = _front(_frame_body(pose), spec, frame_index)
    g.initializer.extend(consts)
    nodes = front + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    inputs = {i.name: i for i in g.input}
    del g.input[:]
    g.input.extend(inputs[n] for n in INPUT_NAMES)  # `poses` is no longer an input
    opsets = {o.domain: o.version for o in model.opset_import}
    opsets[""] = max([opsets.get("", 0)] + [o.version for o in pose.opset_import if o.domain in ("", "ai.onnx")])
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    for key in (POSE_KEY, SHARED_KEY):
        set_metadata(model, key, None)
    if not any(t.data_location == TensorProto.EXTERNAL for t in g.initializer):  # (references: no folder to check them in)
        onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class PoseFront:
    """What a model that takes `poses` as an input needs in front: the pose model file and the frames of
    the window it runs on."""

    model: Path
    frame_index: tuple[int, ...]


def pose_metadata(frame_index: tuple[int, ...], model: str = POSE_MODEL) -> dict[str, Any]:
    """The value of `POSE_KEY`: `model` relative to the model's folder."""
    return {"model": model, "frames": [int(i) for i in frame_index]}


def pose_front(onnx_path: str | Path, graph: Any = None) -> PoseFront | None:
    """The pose model and frames a model's `poses` input comes from (its `POSE_KEY` metadata); None when
    it has no `poses` input (an older export with the pose graph inside, see detach_pose). `graph`: the
    model already read (engines.shared.read_graph), to read it once."""
    p = Path(onnx_path)
    m = read_graph(p) if graph is None else graph
    if not any(i.name == POSES_INPUT for i in m.graph.input):
        return None
    value = next((x.value for x in m.metadata_props if x.key == POSE_KEY), None)
    if value is None:
        raise ModelLoadError(f"{p.name} takes {POSES_INPUT!r} but its metadata names no pose model ({POSE_KEY})")
    d = json.loads(value)
    front = PoseFront(p.parent / d["model"], tuple(int(i) for i in d["frames"]))
    if not front.model.is_file():
        raise ModelLoadError(f"{p.name} runs the pose model {d['model']} beside it, which is missing ({front.model})")
    return front


def one_graph(onnx_path: str | Path, weights: bool = True) -> Any:
    """The model as one graph from the window to its scores (onnx.ModelProto, every weight inside):
    the pose model attached in front of a model that takes `poses` (`pose_front`); an older export,
    which is one graph already, as it is. `weights=False`: the graph without the external data (to look
    at its ops)."""
    import onnx

    from engines.spec import load_spec

    p = Path(onnx_path)
    if weights:
        check_shared_files(p)
    model = onnx.load(str(p), load_external_data=weights)
    front = pose_front(p, model)
    if front is None:
        return model
    return attach_pose(model, onnx.load(str(front.model)), load_spec(p), front.frame_index)


@contextmanager
def one_graph_file(onnx_path: str | Path, folder: str | Path | None = None) -> Iterator[Path]:
    """A path to the one graph of `onnx_path` while the context lasts: the file itself when it is one
    graph already, else a temporary file (in `folder`, default the system's) with every weight inside."""
    p = Path(onnx_path)
    if pose_front(p) is None:
        yield p
        return
    model = one_graph(p)
    with tempfile.TemporaryDirectory(prefix="streamer-one-graph-", dir=folder) as tmp:
        out = Path(tmp) / p.name
        out.write_bytes(model.SerializeToString())  # the weights inline: no external file to find
        yield out


@dataclass(frozen=True)
class Detached:
    """A fused model cut at its poses: the pose graph (one frame in), the graph after it (`poses` an
    input instead of `video`), and the frames of the window the pose graph runs on; serialized ONNX."""

    pose: bytes
    heads: bytes
    frame_index: tuple[int, ...]


def detach_pose(onnx_path: str | Path) -> Detached | None:
    """The inverse of attach_pose, for models exported with the pose graph inside (older exports) and
    runtimes that run the pose graph themselves (once per frame, see PoseRunner): None when the model has
    no pose graph in front."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from engines.spec import INPUT_VIDEO

    model = onnx.load(str(onnx_path))  # external weights load from beside the file
    g = model.graph
    scan = next((n for n in g.node if n.op_type == "Scan" and n.name == FRONT + "scan"), None)
    if scan is None:
        return None
    body = onnx.helper.get_attribute_value(scan.attribute[0])
    pose = helper.make_model(body, opset_imports=model.opset_import, ir_version=model.ir_version)
    consts = {t.name: t for t in g.initializer if t.name.startswith(FRONT)}
    frame_index = tuple(int(i) for i in numpy_helper.to_array(consts[FRONT + "frame_index"]))
    rest = [n for n in g.node if not n.name.startswith(FRONT)]
    del g.node[:]
    g.node.extend(rest)
    used = {i for n in rest for i in n.input}
    kept = [t for t in g.initializer if t.name in used]  # the front's constants go with it
    del g.initializer[:]
    g.initializer.extend(kept)
    inputs = [i for i in g.input if i.name != INPUT_VIDEO or INPUT_VIDEO in used]
    del g.input[:]
    g.input.extend(inputs)
    g.input.append(helper.make_tensor_value_info(POSES_INPUT, TensorProto.FLOAT,
                                                 ["batch", len(frame_index), PEOPLE, POSE_WIDTH]))
    return Detached(pose.SerializeToString(), model.SerializeToString(), frame_index)
