"""The torch backend's CUDA-ready path, checked on the CPU: the network after the poses makes no host
tensor and reads nothing back (what a CUDA graph capture needs), and bucket padding changes no score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from engines.export import random_feed
from engines.model import FusionNet
from engines.pose import PEOPLE, POSE_WIDTH
from engines.runtime.torch import BUCKETS, TorchRuntime, bucket
from engines.spec import INPUT_AUDIO, INPUT_AUDIO_MASK, INPUT_VIDEO, INPUT_VIDEO_MASK, OUTPUT_EMBEDDING, OUTPUT_LOGITS

# torch.tensor(...) and indexing by a list (lift_fresh), nonzero, .item(): each copies between host and
# device or waits for the device, which a CUDA graph capture refuses
HOST_OPS = ("aten.lift_fresh", "aten.nonzero", "aten._local_scalar_dense", "aten.item")


class HostTraffic(TorchDispatchMode):
    """Records the ops that would move data between host and device, and tensors off `device`."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device, self.found = device, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(HOST_OPS):
            self.found.append(str(func))
        self._check(func, (args, kwargs))
        out = func(*args, **(kwargs or {}))
        self._check(func, out)
        return out

    def _check(self, func, tensors) -> None:
        for t in tree_leaves(tensors):
            if isinstance(t, torch.Tensor) and t.device.type != self.device:
                self.found.append(f"{func} has a tensor on {t.device}")


def _after_poses_inputs(spec, arch, batch, device):
    g = torch.Generator().manual_seed(3)
    poses = torch.rand((batch, len(arch.pose_frames), PEOPLE, POSE_WIDTH), generator=g)
    audio = torch.rand((batch, spec.samples), generator=g) * 2 - 1
    return [t.to(device) for t in (audio, torch.ones(batch), torch.ones(batch), poses)]


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_the_network_after_the_poses_is_graph_safe(tiny_spec, tiny_arch, device):
    # on the CPU the ops that make host tensors show; on the meta device a tensor made without the
    # model's device (torch.eye(6), .cpu()) lands on the CPU and shows
    model = FusionNet(tiny_spec, tiny_arch).eval().to(device)
    inputs = _after_poses_inputs(tiny_spec, tiny_arch, 4, device)
    with torch.inference_mode(), HostTraffic(device) as seen:
        logits, emb = model.from_poses(*inputs)
    assert seen.found == []
    assert tuple(logits.shape) == (4, len(tiny_spec.classes)) and tuple(emb.shape) == (4, tiny_spec.embedding_dim)


def test_the_check_sees_host_tensors():
    x = torch.zeros(2, 6)
    with HostTraffic("cpu") as seen:
        x[:, [1, 2]].sum()
        x.nonzero()
    assert seen.found == ["aten.lift_fresh.default", "aten.nonzero.default"]
    with HostTraffic("meta") as seen, pytest.raises(RuntimeError):  # meta and CPU do not mix
        torch.zeros(6, device="meta") * (1.0 - torch.eye(6))[0]
    assert any("has a tensor on cpu" in f for f in seen.found)


def test_buckets():
    assert [bucket(n) for n in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert BUCKETS == (1, 2, 4, 8, 16, 32, 64) and TorchRuntime.max_batch == 64


def test_padded_batches_score_as_unpadded(tiny_onnx, tiny_spec):
    """3 windows run as a bucket of 4 (one padding row): the same outputs as the network at batch 3."""
    feed = random_feed(tiny_spec, 3, seed=11, masks=False)
    with TorchRuntime(tiny_onnx, threads=1) as rt:
        assert (rt.device, rt.precision, rt.graphs) == ("cpu", "fp32", False)
        out = rt.infer(feed)
        assert sorted(rt._slots) == [4]  # the bucket it ran in
        model = rt._model
        with torch.inference_mode():
            want = model(*(torch.from_numpy(feed[n]) for n in (INPUT_VIDEO, INPUT_AUDIO, INPUT_VIDEO_MASK, INPUT_AUDIO_MASK)))
        one = rt.infer({k: v[1:2] for k, v in feed.items()})  # bucket 1, no padding
    for name, w in zip((OUTPUT_LOGITS, OUTPUT_EMBEDDING), want):
        assert out[name].shape == tuple(w.shape)
        np.testing.assert_allclose(out[name], w.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(one[name], w.numpy()[1:2], rtol=1e-5, atol=1e-5, err_msg=name)


def test_results_do_not_alias_the_buffers(tiny_onnx, tiny_spec):
    with TorchRuntime(tiny_onnx, threads=1) as rt:
        first = rt.infer(random_feed(tiny_spec, 2, seed=1))
        kept = {k: v.copy() for k, v in first.items()}
        rt.infer(random_feed(tiny_spec, 2, seed=2))
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])
