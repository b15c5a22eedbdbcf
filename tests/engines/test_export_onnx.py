from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engines.errors import ExportError
from engines.export import check_parity, graph_ops, random_feed
from engines.pose import one_graph
from engines.spec import INPUT_NAMES, OUTPUT_NAMES, load_spec
from engines.trt_support import tensorrt_op_report


def one_graph_session(path):
    """ONNX Runtime on the one graph (the pose model in front, as TensorRT builds it)."""
    return ort.InferenceSession(one_graph(path).SerializeToString(), providers=["CPUExecutionProvider"])


def test_exported_graph_matches_torch_at_batches_1_and_3(tiny_model, tiny_onnx, tiny_spec):
    reports = check_parity(tiny_model, tiny_onnx, tiny_spec, batches=(1, 3), atol=1e-4)
    assert [r.batch for r in reports] == [1, 3]
    assert all(r.max_abs_diff_logits <= 1e-4 for r in reports)


def test_graph_names_ops_and_sidecar(tiny_onnx, tiny_spec):
    sess = one_graph_session(tiny_onnx)
    assert [i.name for i in sess.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    assert all(isinstance(i.shape[0], str) for i in sess.get_inputs())  # symbolic batch axis
    assert sess.get_inputs()[0].type == "tensor(uint8)"
    ops = graph_ops(tiny_onnx)
    assert {"Scan", "Conv", "TopK"} <= ops  # the pose model runs inside, as a Scan over the frames
    assert not ops & {"STFT", "DFT", "Loop", "If"}
    assert tensorrt_op_report(tiny_onnx)["unsupported"] == []
    assert load_spec(tiny_onnx) == tiny_spec


def test_ort_batch_5_matches_torch_per_row(tiny_model, tiny_onnx, tiny_spec):
    sess = one_graph_session(tiny_onnx)
    feed = random_feed(tiny_spec, 5, seed=7, masks=False)
    logits, emb = sess.run(list(OUTPUT_NAMES), feed)
    assert logits.shape == (5, 3) and emb.shape == (5, tiny_spec.embedding_dim)
    for i in range(5):  # rows are independent: batch 1 gives the same row
        one = {k: v[i : i + 1] for k, v in feed.items()}
        np.testing.assert_allclose(sess.run([OUTPUT_NAMES[0]], one)[0][0], logits[i], atol=1e-5)
    with torch.no_grad():
        ref = tiny_model(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES))[0].numpy()
    assert np.abs(ref - logits).max() <= 1e-4


def test_a_graph_that_differs_from_torch_is_reported(tiny_model, tiny_onnx, tiny_spec, tiny_arch):
    from engines.model import FusionNet

    other = FusionNet(tiny_spec, tiny_arch).eval()
    other.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():  # the same backbones, heads moved: the exported graph no longer matches
        for p in other.heads.parameters():
            p.add_(0.5)
    with pytest.raises(ExportError, match="disagree"):
        check_parity(other, tiny_onnx, tiny_spec, batches=(2,))


def test_windows_without_video_skip_the_pose_model_and_agree_with_torch(tiny_model, tiny_onnx, tiny_spec):
    """The graph runs the pose model only on windows with video: a batch with none (a Scan over nothing
    would fail) and a mixed one give torch's scores."""
    sess = one_graph_session(tiny_onnx)
    for mask in ([0.0, 0.0, 0.0], [0.0, 1.0, 0.0]):
        feed = random_feed(tiny_spec, 3, seed=11)
        feed["video_mask"] = np.array(mask, np.float32)
        logits, emb = sess.run(list(OUTPUT_NAMES), feed)
        with torch.no_grad():
            ref = tiny_model(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES))[0].numpy()
        assert np.abs(ref - logits).max() <= 1e-4
        assert (emb[np.array(mask) == 0, 1024:] == 0).all()  # no people where there is no video
