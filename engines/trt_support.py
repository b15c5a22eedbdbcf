"""TensorRT's ONNX parser support, kept in the repo (engines/trt_ops.json), and a graph checked against it.

Plain ONNX reading: no TensorRT needed, so the exporter checks every graph it writes, and `streamer engine
info` reports on any model, on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRT_OPS_FILE = Path(__file__).resolve().parent / "trt_ops.json"


def trt_supported_ops() -> dict[str, Any]:
    """The operator list kept in the repo (with its source and TensorRT version)."""
    doc: dict[str, Any] = json.loads(TRT_OPS_FILE.read_text())
    return doc


def tensorrt_op_report(onnx_path: str | Path) -> dict[str, Any]:
    """The graph's ops (subgraphs included), opset and I/O types against the TensorRT list: `unsupported`
    lists every problem found (empty: the parser should take the graph). The graph is the one TensorRT
    builds: the pose model in front of a model that takes `poses` (engines.pose.one_graph). Needs the
    onnx package."""
    import onnx

    from engines.pose import one_graph

    doc = trt_supported_ops()
    model = one_graph(onnx_path, weights=False)
    supported = set(doc["supported"])
    nodes: list[Any] = []
    constants: set[str] = set()
    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        constants |= {i.name for i in g.initializer}
        for node in g.node:
            nodes.append(node)
            graphs.extend(a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH)
            graphs.extend(a.graphs for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS)  # type: ignore[misc]
    ops = sorted({n.op_type for n in nodes})
    problems = [f"{op} is not in the TensorRT {doc['tensorrt']} list" for op in ops if op not in supported]
    problems += sorted({f"{n.op_type} is in the custom domain {n.domain!r}" for n in nodes if n.domain not in ("", "ai.onnx")})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not doc["opset_min"] <= opset <= doc["opset_max"]:
        problems.append(f"opset {opset} is outside {doc['opset_min']}..{doc['opset_max']}")
    constants |= {o for n in nodes if n.op_type == "Constant" for o in n.output}
    for n in nodes:
        if n.op_type in doc["restricted_axes_input"] and len(n.input) > 1 and n.input[1] and n.input[1] not in constants:
            problems.append(f"{n.op_type} {n.name!r} takes its axes from a computed tensor {n.input[1]!r}")
    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16",
             onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT8: "int8",
             onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool"}
    for v in [*model.graph.input, *model.graph.output]:
        t = names.get(v.type.tensor_type.elem_type, f"type {v.type.tensor_type.elem_type}")
        if t not in doc["io_dtypes"]:
            problems.append(f"network I/O {v.name} is {t}")
    return {"ops": ops, "opset": opset, "list": f"TensorRT {doc['tensorrt']} ({doc['source']})", "unsupported": problems}
