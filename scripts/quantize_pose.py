"""Static INT8 quantization of the pose model (MoveNet MultiPose, scripts/derive_pose.py) with ONNX Runtime.

    .venv/bin/python scripts/quantize_pose.py [--data DIR] [--method minmax|percentile|entropy] [--evaluate]

Reproduces the INT8 attempt of issue #22 (percentile calibration, the default, is what was measured).

- Input: `engines/weights/backbones/movenet_multipose.onnx` (float16 weights + Cast). The Casts are folded
  back into float32 initializers, `quant_pre_process` (symbolic shape inference + ORT basic optimisation)
  runs on that, then `quantize_static` (QDQ, per-channel int8 weights) quantizes only the network (the
  MobileNetV2-FPN backbone and the head convolutions: Conv, its Relu/Clip, the residual Adds and the FPN's
  Resize); the CenterNet post-processing (Sigmoid, MaxPool, TopK, GatherND, ArgMax, ...) stays float.
- Calibration frames, all from training sources only: from every fight clip whose source_id is not a
  validation source (`streamer.train.data._split_sources(rows, 0)`), the frames at 1/3 and 2/3 of the clip;
  from every ucsd_ped2 `train/*.mp4`, 4 evenly spaced frames. Each frame is decoded with PyAV and resized with
  cv2.INTER_AREA to 256x160 (width x height), as RGB.
- Output: `.cache/movenet_multipose.int8.onnx` (not shipped: under the shipped heads it costs the fight class
  more than 0.01 AP on validation, benchmarks/int8_pose.py); the sha256 of input and output are printed.
- `--evaluate`: ms per 160x256 frame, float vs int8 alternated, at 1 and 2 threads; and the agreement of
  the two on 4 frames of each validation clip of the fight set (people matched by box IoU).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BACKBONE_DIR = REPO / "engines" / "weights" / "backbones"
INPUT = BACKBONE_DIR / "movenet_multipose.onnx"
OUTPUT = REPO / ".cache" / "movenet_multipose.int8.onnx"  # not shipped: benchmarks/int8_pose.py
DATA = REPO.parent / "shared" / "data"
W, H = 256, 160
FIGHT_CAL_POS = (1 / 3, 2 / 3)  # where in each training fight clip a calibration frame is taken
UCSD_CAL_FRAMES = 4
VAL_FRAMES = 4  # per validation clip, evenly spaced, for --evaluate
NETWORK_OPS = ["Conv", "Clip", "Relu", "Add", "Resize"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decode(path: Path, positions: list[float]) -> list[np.ndarray]:
    """RGB frames [H, W, 3] uint8 at fractions `positions` of the clip, resized with INTER_AREA."""
    import av
    import cv2

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    idx = sorted({min(len(frames) - 1, int(p * len(frames))) for p in positions})
    return [cv2.resize(frames[i], (W, H), interpolation=cv2.INTER_AREA) for i in idx]


def fight_split(data: Path) -> tuple[list[dict[str, str]], set[str]]:
    from streamer.train.data import _split_sources

    with (data / "fight" / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, _split_sources(rows, 0)


def calibration_frames(data: Path) -> np.ndarray:
    rows, val = fight_split(data)
    out: list[np.ndarray] = []
    for r in sorted(rows, key=lambda r: r["file"]):
        if r["source_id"] not in val:
            out += decode(data / "fight" / r["file"], list(FIGHT_CAL_POS))
    for f in sorted((data / "ucsd_ped2" / "train").glob("*.mp4")):
        out += decode(f, [(i + 0.5) / UCSD_CAL_FRAMES for i in range(UCSD_CAL_FRAMES)])
    return np.stack(out)


def validation_frames(data: Path) -> np.ndarray:
    rows, val = fight_split(data)
    out: list[np.ndarray] = []
    for r in sorted(rows, key=lambda r: r["file"]):
        if r["source_id"] in val:
            out += decode(data / "fight" / r["file"], [(i + 0.5) / VAL_FRAMES for i in range(VAL_FRAMES)])
    return np.stack(out)


def to_float32(src: Path, dst: Path) -> int:
    """Fold each `Cast(float16 initializer) -> float` back into a float32 initializer; returns how many."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    keep, n = [], 0
    for node in g.node:
        if node.op_type == "Cast" and node.input[0] in inits and inits[node.input[0]].data_type == onnx.TensorProto.FLOAT16:
            t = inits.pop(node.input[0])
            g.initializer.remove(t)
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), node.output[0]))
            n += 1
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return n


def network_nodes(path: Path, exclude_last_head_convs: bool, backbone_only: bool = False) -> list[str]:
    """Names of the nodes to quantize: the Convs and, inside the feature extractor, its Clip/Relu/Add/Resize."""
    import onnx

    g = onnx.load(str(path)).graph
    consumers: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    names = []
    for n in g.node:
        if n.op_type == "Conv":
            # the last conv of each head feeds the float post-processing (no Relu/Clip after it)
            last = not any(c in ("Relu", "Clip", "Conv") for c in consumers.get(n.output[0], []))
            head = "feature_extractor" not in n.name and not n.name.startswith("Conv__")
            if backbone_only and head:
                continue
            if exclude_last_head_convs and last and head:
                continue
            names.append(n.name)
        elif n.op_type in NETWORK_OPS and ("feature_extractor" in n.name or not backbone_only and any(
                k in n.name for k in ("kpt_", "center_0", "box_scale_0", "box_offset_0"))):
            names.append(n.name)
    return names


class Reader:
    def __init__(self, frames: np.ndarray, name: str) -> None:
        self.it = iter([{name: f[None].astype(np.int32)} for f in frames])

    def get_next(self):  # noqa: ANN201
        return next(self.it, None)


def _chunked_histograms(chunk: int = 16) -> None:
    """Histogram calibrators keep every frame's full activations until the end; feed them `chunk` frames
    at a time instead (the histograms are merged across calls), so the memory stays bounded."""
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    if getattr(HistogramCalibrater.collect_data, "_chunked", False):
        return
    orig = HistogramCalibrater.collect_data

    def collect_data(self, data_reader):  # noqa: ANN001, ANN202
        while True:
            batch = [x for x in (data_reader.get_next() for _ in range(chunk)) if x]
            if not batch:
                return
            it = iter(batch)
            orig(self, type("R", (), {"get_next": lambda _s: next(it, None)})())

    collect_data._chunked = True  # type: ignore[attr-defined]
    HistogramCalibrater.collect_data = collect_data


def quantize(frames: np.ndarray, method: str, act: str, exclude_last: bool, out: Path,
             backbone_only: bool = False, percentile: float = 99.999, ops: tuple[str, ...] = tuple(NETWORK_OPS),
             skip_first_conv: bool = False) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _chunked_histograms()
    with tempfile.TemporaryDirectory() as tmp:
        f32, pre = Path(tmp) / "f32.onnx", Path(tmp) / "pre.onnx"
        casts = to_float32(INPUT, f32)
        quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)  # symbolic: incomplete (TopK etc.)
        nodes = network_nodes(pre, exclude_last, backbone_only)
        optypes = {n.name: n.op_type for n in __import__("onnx").load(str(pre)).graph.node}
        nodes = [n for n in nodes if optypes[n] in ops]
        if skip_first_conv:
            nodes = [n for n in nodes if "model/Conv1_" not in n]  # the stem conv and its Relu6
        settings = dict(
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8 if act == "quint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            op_types_to_quantize=list(ops), nodes_to_quantize=nodes,
            extra_options={"CalibMovingAverage": False, "CalibPercentile": percentile} if method == "percentile" else {},
        )
        quantize_static(str(pre), str(out), Reader(frames, "input"), **settings)
    return {"casts folded": casts, "nodes quantized": len(nodes), "method": method, "activations": act,
            "weights": "qint8 per-channel", "format": "QDQ", "exclude last head convs": exclude_last,
            "backbone only": backbone_only, "op types": list(ops), "skip first conv": skip_first_conv, **({"percentile": percentile} if method == "percentile" else {})}


def session(path: Path, threads: int):  # noqa: ANN201
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_all(sess, frames: np.ndarray) -> np.ndarray:  # noqa: ANN001
    return np.stack([sess.run(None, {"input": f[None].astype(np.int32)})[0][0] for f in frames])


def timing(paths: dict[str, Path], frames: np.ndarray, threads: int, rounds: int = 6) -> dict[str, float]:
    """ms per frame, median over `rounds` alternating passes over `frames`."""
    sessions = {k: session(p, threads) for k, p in paths.items()}
    for s in sessions.values():
        run_all(s, frames[:5])
    ms: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            run_all(s, frames)
            ms[k].append((time.perf_counter() - t) * 1000 / len(frames))
    return {k: float(np.median(v)) for k, v in ms.items()}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    y0, x0, y1, x1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, y1 - y0) * max(0.0, x1 - x0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def agreement(ref: np.ndarray, q: np.ndarray, person_thr: float = 0.1, kp_thr: float = 0.2, iou_thr: float = 0.5) -> dict:
    """Per frame, greedy IoU matching of people with score > person_thr in either output."""
    score_d, kp_d, kp_s, sets_differ, n_ref, n_q, matched = [], [], [], 0, 0, 0, 0
    for r, s in zip(ref, q):
        pr = [p for p in r if p[55] > person_thr]
        ps = [p for p in s if p[55] > person_thr]
        n_ref, n_q = n_ref + len(pr), n_q + len(ps)
        pairs = sorted(((iou(a[51:55], b[51:55]), i, j) for i, a in enumerate(pr) for j, b in enumerate(ps)), reverse=True)
        used_i, used_j = set(), set()
        for v, i, j in pairs:
            if v < iou_thr or i in used_i or j in used_j:
                continue
            used_i.add(i), used_j.add(j)
            a, b = pr[i], ps[j]
            score_d.append(abs(a[55] - b[55]))
            ka, kb = a[:51].reshape(17, 3), b[:51].reshape(17, 3)
            kp_s.extend(np.abs(ka[:, 2] - kb[:, 2]))
            ok = (ka[:, 2] > kp_thr) & (kb[:, 2] > kp_thr)
            kp_d.extend(np.hypot(ka[ok, 0] - kb[ok, 0], ka[ok, 1] - kb[ok, 1]))
        matched += len(used_i)
        if len(used_i) != len(pr) or len(used_j) != len(ps):
            sets_differ += 1
    return {"frames": len(ref), "people fp32": n_ref, "people int8": n_q, "matched": matched,
            "mean |person score diff|": float(np.mean(score_d)) if score_d else float("nan"),
            "mean |keypoint score diff|": float(np.mean(kp_s)) if kp_s else float("nan"),
            "mean keypoint distance (frame fractions)": float(np.mean(kp_d)) if kp_d else float("nan"),
            "p95 keypoint distance": float(np.percentile(kp_d, 95)) if kp_d else float("nan"),
            "frames whose people set differs": sets_differ}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="percentile")
    p.add_argument("--activations", choices=["quint8", "qint8"], default="quint8")
    p.add_argument("--quantize-head-outputs", action="store_true",
                   help="also quantize the last conv of each head (default: those stay float)")
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--evaluate", action="store_true", help="timing and agreement after quantizing")
    p.add_argument("--skip-quantize", action="store_true", help="only --evaluate the existing --output")
    args = p.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    if not args.skip_quantize:
        cal = calibration_frames(args.data)
        print(f"calibration frames: {len(cal)} (sha256 of the stacked uint8 frames "
              f"{hashlib.sha256(cal.tobytes()).hexdigest()})")
        t = time.perf_counter()
        info = quantize(cal, args.method, args.activations, not args.quantize_head_outputs, args.output)
        print("settings:", info, f"({time.perf_counter() - t:.0f} s)")
    print(f"input  {INPUT.name}: sha256 {sha256(INPUT)}, {INPUT.stat().st_size} bytes")
    print(f"output {args.output.name}: sha256 {sha256(args.output)}, {args.output.stat().st_size} bytes")
    if args.evaluate:
        val = validation_frames(args.data)
        ref, q = run_all(session(INPUT, 1), val), run_all(session(args.output, 1), val)
        print("agreement on validation frames:", agreement(ref, q))
        for threads in (1, 2):
            print(f"ms/frame at {threads} thread(s):", timing({"fp32": INPUT, "int8": args.output}, val[:60], threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
