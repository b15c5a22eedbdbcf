"""One copy of each backbone's weights, read by every runtime (engines/shared.py, engines/pose.py): the
exported graph takes `poses` and names the pose model file beside it; its YAMNet weights are references
into `backbones/yamnet.bin`, each one the bytes of the tensor it stands for; a backbone file that changed
since the export is refused; and an older export, one file with the pose graph inside, still loads."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.external_data_helper import ExternalDataInfo

from engines.errors import ModelLoadError
from engines.export import model_files, model_sha256, random_feed
from engines.pose import POSES_INPUT, one_graph, one_graph_file, pose_front
from engines.runtime.onnxruntime import OnnxRuntime
from engines.shared import POSE_MODEL, SHARED_KEY, YAMNET_WEIGHTS, check_shared_files, shared_files
from engines.spec import BACKBONE_DIR, DEFAULT_MODEL, INPUT_NAMES, OUTPUT_NAMES, WEIGHTS_DIR


def references(path: Path) -> list[onnx.TensorProto]:
    return [t for t in onnx.load(str(path), load_external_data=False).graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL]


def check_references(path: Path) -> int:
    """Every external-data reference of `path` is into backbones/yamnet.bin and reads there the bytes of
    a YAMNet tensor of the same type and shape (the package's backbones/yamnet.onnx, loaded by onnx); returns
    how many."""
    yamnet = onnx.load(str(BACKBONE_DIR / "yamnet.onnx"))
    tensors = {(t.data_type, tuple(t.dims), hashlib.sha256(t.raw_data).digest()) for t in yamnet.graph.initializer}
    refs = references(path)
    data = (path.parent / YAMNET_WEIGHTS).read_bytes()
    for t in refs:
        info = ExternalDataInfo(t)
        assert info.location == YAMNET_WEIGHTS, t.name
        raw = data[info.offset : info.offset + info.length]
        assert len(raw) == info.length == np.prod(t.dims) * 4, t.name  # float32 weights
        assert (t.data_type, tuple(t.dims), hashlib.sha256(raw).digest()) in tensors, t.name
    return len(refs)


def test_the_default_model_reads_the_backbones_files_once():
    yamnet = onnx.load(str(BACKBONE_DIR / "yamnet.onnx"))
    assert check_references(DEFAULT_MODEL) == len(yamnet.graph.initializer) == 56  # every YAMNet weight, none copied
    assert not list(WEIGHTS_DIR.glob("*.bin"))  # no weight file of its own (fusion.yamnet.bin is gone)
    assert DEFAULT_MODEL.stat().st_size < 2e6  # the heads, YAMNet's front end, small constants
    sums = dict(reversed(line.split("  ")) for line in (BACKBONE_DIR / "SHA256SUMS").read_text().splitlines())
    assert shared_files(DEFAULT_MODEL) == {YAMNET_WEIGHTS: sums["output yamnet.bin"],
                                           POSE_MODEL: sums["output movenet_multipose.onnx"]}
    assert model_files(DEFAULT_MODEL) == [DEFAULT_MODEL, WEIGHTS_DIR / POSE_MODEL, WEIGHTS_DIR / YAMNET_WEIGHTS]
    front = pose_front(DEFAULT_MODEL)
    assert front is not None and front.model == BACKBONE_DIR / "movenet_multipose.onnx" and front.frame_index == (0, 2, 4, 6)
    onnx.checker.check_model(str(DEFAULT_MODEL))  # onnx resolves the references beside the file
    sess = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])  # so does ONNX Runtime
    assert {i.name for i in sess.get_inputs()} == (set(INPUT_NAMES) - {"video"}) | {POSES_INPUT}


def test_the_one_graph_is_the_pose_model_in_front_with_every_weight_inside(tiny_onnx, tiny_spec):
    model = one_graph(tiny_onnx)
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert not {p.key for p in model.metadata_props} & {SHARED_KEY, "streamer.pose"}
    scan = next(n for n in model.graph.node if n.op_type == "Scan")
    body = onnx.helper.get_attribute_value(scan.attribute[0])
    pose = onnx.load(str(tiny_onnx.parent / POSE_MODEL))
    assert len(body.node) == len(pose.graph.node) + 1  # the pose model's nodes, after an Unsqueeze of the frame
    assert [numpy_helper.to_array(t).tobytes() for t in body.initializer[: len(pose.graph.initializer)]] == \
        [numpy_helper.to_array(t).tobytes() for t in pose.graph.initializer]
    with one_graph_file(tiny_onnx) as path:  # what TensorRT parses: a file ONNX Runtime runs as it is
        assert path != tiny_onnx and path.name == tiny_onnx.name
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = random_feed(tiny_spec, 3, seed=2, masks=False)
        got = dict(zip(OUTPUT_NAMES, sess.run(list(OUTPUT_NAMES), feed)))
    assert not path.exists()
    with OnnxRuntime(tiny_onnx) as rt:  # the pose model run beside the graph: the same scores
        want = rt.infer(feed)
    for k in OUTPUT_NAMES:
        np.testing.assert_allclose(got[k], want[k], atol=1e-4)


def test_a_fresh_export_shares_the_backbones_and_copies_them_once_outside_the_package(tiny_onnx):
    folder = tiny_onnx.parent
    assert check_references(tiny_onnx) > 0
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "backbones/NOTICE.md", "backbones/movenet_multipose.onnx", "backbones/yamnet.bin",
        "tiny.json", "tiny.onnx", "tiny.pt"]
    for rel in (YAMNET_WEIGHTS, POSE_MODEL):
        assert (folder / rel).read_bytes() == (WEIGHTS_DIR / rel).read_bytes()
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["audio", "video_mask", "audio_mask", POSES_INPUT]
    assert tiny_onnx.stat().st_size < 2e6  # the heads and YAMNet's front end (its DFT basis: 0.8 MB)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src.parent, dst)
    return dst / src.name


def test_a_backbone_file_changed_since_the_export_is_refused_and_changes_the_digest(tiny_onnx, tmp_path):
    path = copy_model(tiny_onnx, tmp_path / "m")
    digest = model_sha256(path)
    assert digest == model_sha256(tiny_onnx)
    weights = path.parent / YAMNET_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    assert model_sha256(path) != digest  # the TensorRT engine cache key too
    with pytest.raises(ModelLoadError, match="not the file"):
        check_shared_files(path)
    with pytest.raises(ModelLoadError, match="not the file"):
        OnnxRuntime(path)
    check_shared_files(path, WEIGHTS_DIR)  # the package's, which the torch backend reads, are still the ones
    (path.parent / POSE_MODEL).unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        OnnxRuntime(path)
    with pytest.raises(ModelLoadError, match=f"{POSE_MODEL}.*missing"):  # the TensorRT cache key: a backend
        model_sha256(path)  # that cannot open, so engine.backend auto goes on to the next, not a traceback


def test_an_older_export_with_the_pose_graph_inside_still_loads(tiny_onnx, tiny_spec, tmp_path):
    """What exports wrote before the backbones were shared: one file, the pose graph in front (the
    runtime cuts it off again) and every weight inside."""
    old = tmp_path / "old.onnx"
    old.write_bytes(one_graph(tiny_onnx).SerializeToString())
    shutil.copyfile(tiny_onnx.with_suffix(".json"), old.with_suffix(".json"))
    assert pose_front(old) is None and shared_files(old) == {} and model_files(old) == [old]
    feed = random_feed(tiny_spec, 4, seed=9, masks=False)
    with OnnxRuntime(old) as a, OnnxRuntime(tiny_onnx) as b:
        assert a.pose is not None and a._frame_index == b._frame_index == (0, 1)
        got, want = a.infer(feed), b.infer(feed)
    for k in OUTPUT_NAMES:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_the_torch_backend_checks_the_packages_backbone_files(tiny_onnx, tmp_path):
    """The torch backend reads the package's backbone files: a model exported against other bytes is refused."""
    from engines.runtime import open_runtime
    from engines.shared import read_graph, save_graph, set_metadata

    path = copy_model(tiny_onnx, tmp_path / "m")
    with open_runtime(path, backend="torch", threads=1) as rt:
        assert rt.backend == "torch"
    m = read_graph(path)
    set_metadata(m, SHARED_KEY, {**shared_files(path), YAMNET_WEIGHTS: "0" * 64})
    save_graph(m, path)
    with pytest.raises(ModelLoadError, match="not the file"):
        open_runtime(path, backend="torch")
