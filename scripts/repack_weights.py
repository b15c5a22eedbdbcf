"""Re-package an exported model whose file carries its own copy of the backbones (the pose graph in
front, YAMNet's weights in `<stem>.yamnet.bin`) into the layout a fresh export has: no retraining, the
same weights, one copy of each backbone in the package.

    python scripts/repack_weights.py [--model engines/weights/fusion.onnx]

- The pose graph is cut off (engines.pose.detach_pose): the file keeps the graph after the pose model
  (`poses` an input) and names the pose model file and its frames in its metadata (engines.pose.POSE_KEY).
  The cut-off Scan body must be the pose model file's graph exactly (engines.pose._frame_body of
  `backbones/movenet_multipose.onnx`), or nothing is written.
- YAMNet's weights become references into `backbones/yamnet.bin` (engines.shared.share_weights), every
  one byte for byte the tensor it replaces; `<stem>.*.bin` is deleted.
- Then the one graph made from the new files (engines.pose.one_graph, what TensorRT builds) must be the
  old file's graph exactly, initializers, nodes and metadata alike; the new files are removed and the old
  ones put back otherwise. `model_version` in the sidecar is left as it is: it names the trained model.

Needs onnx (no torch). `tests/engines/test_default_model_scores.py` checks the scores of every runtime
against those recorded before the re-packaging.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.pose import POSE_KEY, _frame_body, detach_pose, one_graph, pose_metadata  # noqa: E402
from engines.shared import POSE_MODEL, model_files, save_graph, set_metadata, share_weights  # noqa: E402
from engines.spec import DEFAULT_MODEL  # noqa: E402


def as_stored(model):  # noqa: ANN001, ANN201
    """`model` without the `data_location: DEFAULT` that onnx.load writes into each tensor it read from an
    external file (a field set to its default value is still serialized): stored inline, as the others."""
    from onnx import TensorProto

    for t in model.graph.initializer:
        if t.HasField("data_location") and t.data_location == TensorProto.DEFAULT:
            t.ClearField("data_location")
    return model


def main(argv: list[str] | None = None) -> int:
    import onnx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = p.parse_args(argv)
    path: Path = args.model
    old_files = model_files(path)
    detached = detach_pose(path)
    if detached is None:
        print(f"{path}: no pose graph inside, already re-packaged")
        return 0
    old = onnx.load(str(path))  # every weight loaded: the reference for the check at the end
    backup = {f: f.read_bytes() for f in old_files}
    pose = onnx.load(str(path.parent / POSE_MODEL))
    if detached.pose != onnx.helper.make_model(_frame_body(pose), opset_imports=old.opset_import,
                                                ir_version=old.ir_version).SerializeToString():
        raise SystemExit(f"{path}: its pose graph is not {POSE_MODEL}: nothing written")

    heads = onnx.load_from_string(detached.heads)  # every weight inline
    set_metadata(heads, POSE_KEY, pose_metadata(detached.frame_index))
    try:
        save_graph(heads, path)
        new_files = share_weights(path, extra=(POSE_MODEL,))
        shared = sum(1 for t in onnx.load(str(path), load_external_data=False).graph.initializer if t.external_data)
        if not shared:
            raise SystemExit(f"{path}: no weight matched the YAMNet weights file: put back")
        for f in old_files[1:]:
            f.unlink()
        again = one_graph(path)
        if as_stored(again).SerializeToString() != as_stored(old).SerializeToString():
            raise SystemExit(f"{path}: the one graph of the re-packaged files is not the old file's: put back")
    except BaseException:
        for f, data in backup.items():
            f.write_bytes(data)
        raise
    print(f"{path.name}: pose frames {list(detached.frame_index)} from {POSE_MODEL}; {shared} initializers read from "
          f"the YAMNet weights file; the one graph is the old file's, byte for byte")
    print("before:", ", ".join(f"{f.name} {len(backup[f])}" for f in old_files),
          f"= {sum(len(b) for b in backup.values())} bytes of model files")
    print("after:", ", ".join(f"{f.relative_to(path.parent)} {f.stat().st_size}" for f in new_files),
          f"(of which {path.name}: {path.stat().st_size} bytes; the rest are the backbones' own files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
