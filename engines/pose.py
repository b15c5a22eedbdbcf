"""MoveNet MultiPose, the video side's eyes: up to 6 people per frame, each a box and 17 keypoints.

The derived ONNX file (`engines/weights/backbones/movenet_multipose.onnx`, scripts/derive_pose.py)
takes one int32 RGB frame [1, H, W, 3] of any size (the window's frames as they are) and gives
[1, 6, 56]: per person 17 x (y, x, score) in fractions of the frame, then (ymin, xmin, ymax, xmax,
score). Its graph has batch 1 and its own post-processing, so frames go through it one at a time.

- `PoseModel`: the torch side (training features, the torch backend): ONNX Runtime on the CPU.
- `attach_pose`: the fusion graph is exported with the poses as an input; this puts the pose graph in
  front of it, as a Scan over the sampled frames of the windows that have video (`video_mask` > 0;
  the others get no people, and their video classes are masked anyway), so the served model is one
  graph from the window's pixels and audio to the event scores, and audio-only windows cost no pose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.backbones import POSE_ONNX
from engines.people import PEOPLE, POSE_WIDTH

POSES_INPUT = "poses"  # the exported heads' extra input, filled by attach_pose


class PoseModel(nn.Module):
    """uint8 frames [N, H, W, 3] -> float32 poses [N, 6, 56], on the device of the frames."""

    def __init__(self, path: Path = POSE_ONNX, threads: int = 0) -> None:
        super().__init__()
        self.path, self.threads = Path(path), threads
        self._sess: Any = None

    def session(self) -> Any:
        if self._sess is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = self.threads
            self._sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        return self._sess

    def run(self, frames: np.ndarray) -> np.ndarray:
        sess = self.session()
        name = sess.get_inputs()[0].name
        x = frames.astype(np.int32)  # the graph's input type, converted once for all frames
        out = np.zeros((len(frames), PEOPLE, POSE_WIDTH), np.float32)
        for i in range(len(x)):
            out[i] = sess.run(None, {name: x[i : i + 1]})[0][0]
        return out

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(frames.detach().cpu().numpy())).to(frames.device)


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
              "poses_shape": np.array([-1, k, PEOPLE, POSE_WIDTH], np.int64),
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
        node("Reshape", ["pose_each", "poses_shape"], ["pose_found"], name="pose_unflatten"),
        # back into a [B, K, 6, 56] of zeros at the rows with video
        node("Shape", [INPUT_VIDEO_MASK], ["pose_batch"], name="pose_batch"),
        node("Concat", ["pose_batch", "pose_row_shape"], ["pose_full_shape"], axis=0, name="pose_full_shape"),
        node("ConstantOfShape", ["pose_full_shape"], ["pose_none"], name="pose_none",
             value=numpy_helper.from_array(np.zeros(1, np.float32))),
        node("ScatterND", ["pose_none", "pose_rows", "pose_found"], [POSES_INPUT], name="pose_scatter"),
    ]
    return nodes, [numpy_helper.from_array(v, n) for n, v in consts.items()]


def attach_pose(onnx_path: str | Path, spec: Any, frame_index: tuple[int, ...], pose_path: Path = POSE_ONNX) -> None:
    """Replace the graph input `poses` [B, K, 6, 56] of `onnx_path` by the pose model run on frames
    `frame_index` of the windows of its `video` input [B, T, H, W, 3] whose `video_mask` is > 0 (zeros for
    the others), in place. `spec` (engines.spec.ModelSpec) gives T, H, W."""
    import onnx
    from onnx import TensorProto, helper

    from engines.spec import INPUT_NAMES, INPUT_VIDEO

    model, pose = onnx.load(str(onnx_path)), onnx.load(str(pose_path))
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
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))
