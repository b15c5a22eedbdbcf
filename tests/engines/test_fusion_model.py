from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.model import Arch, FusionNet, LogMel, count_macs, count_params, example_inputs
from engines.spec import ModelSpec


def test_output_shapes(tiny_model, tiny_spec):
    logits, emb = tiny_model(*example_inputs(tiny_spec, batch=3))
    assert logits.shape == (3, len(tiny_spec.classes))
    assert emb.shape == (3, tiny_spec.embedding_dim)
    assert logits.dtype == emb.dtype == torch.float32


def test_default_geometry_shapes_and_budget():
    spec = ModelSpec(classes=tuple("abcdefghijkl"), embedding_dim=128)
    model = FusionNet(spec).eval()
    with torch.no_grad():
        logits, emb = model(*example_inputs(spec, batch=2))
    assert logits.shape == (2, 12) and emb.shape == (2, 128)
    # the real-time budget: keep the default model light (see engines/weights/MODEL_CARD.md)
    assert count_macs(model, spec) < 150e6
    assert count_params(model) < 2_000_000


@pytest.mark.parametrize("branch", ["video", "audio"])
def test_mask_zeroes_the_branch(tiny_model, tiny_spec, branch):
    video, audio, vm, am = example_inputs(tiny_spec, batch=2, seed=3)
    if branch == "video":
        vm = torch.zeros(2)
        other = (torch.randint(0, 256, video.shape, dtype=torch.uint8), audio, vm, am)
    else:
        am = torch.zeros(2)
        other = (video, torch.rand(audio.shape) * 2 - 1, vm, am)
    with torch.no_grad():
        a = tiny_model(video, audio, vm, am)[0]
        b = tiny_model(*other)[0]
        unmasked = tiny_model(video, audio, torch.ones(2), torch.ones(2))[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, unmasked)


def test_training_skips_absent_modality_in_batchnorm(tiny_spec, tiny_arch):
    torch.manual_seed(0)
    model = FusionNet(tiny_spec, tiny_arch).train()
    bn = model.video_cnn[0][1]
    before = bn.running_mean.clone()
    video, audio, _, am = example_inputs(tiny_spec, batch=4)
    logits, _ = model(video, audio, torch.zeros(4), am)
    logits.sum().backward()
    assert torch.equal(bn.running_mean, before)  # no video row reached the video BatchNorm
    model(video, audio, torch.tensor([1.0, 0, 0, 0]), am)
    assert not torch.equal(bn.running_mean, before)


def test_logmel_matches_torch_stft():
    arch = Arch(n_mels=32)
    lm = LogMel(arch, 16000)
    audio = torch.rand(2, 4000) * 2 - 1
    ours = lm(audio)
    window = torch.hann_window(arch.n_fft, periodic=True)
    ref = torch.stft(audio, arch.n_fft, arch.hop, window=window, center=False, return_complex=True)
    power = ref.abs() ** 2  # [B, F, N]
    mel = lm.mel[:, : arch.n_fft // 2 + 1, 0]
    ref_lm = torch.log(torch.einsum("mf,bfn->bmn", mel, power) + arch.log_eps)
    assert ours.shape == ref_lm.shape == (2, 32, 1 + (4000 - arch.n_fft) // arch.hop)
    assert torch.allclose(ours, ref_lm, atol=1e-3)


def test_spec_validation(tiny_arch):
    with pytest.raises(ValueError, match="classes"):
        FusionNet(ModelSpec(embedding_dim=8), tiny_arch)
    with pytest.raises(ValueError, match="n_fft"):
        FusionNet(ModelSpec(classes=("a",), embedding_dim=8, window_seconds=0.01), tiny_arch)


def test_arch_round_trip(tiny_arch):
    assert Arch.from_dict(tiny_arch.to_dict()) == tiny_arch
    assert np.isfinite(count_macs(FusionNet(ModelSpec(classes=("a",), frames=2, height=32, width=32,
                                                      window_seconds=0.25, embedding_dim=8), tiny_arch),
                                  ModelSpec(classes=("a",), frames=2, height=32, width=32,
                                            window_seconds=0.25, embedding_dim=8)))
