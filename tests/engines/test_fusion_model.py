"""The v5 fusion network: shapes, modality gates, YAMNet's front end, the AudioSet-mapped classes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from engines.backbones import (
    BACKBONE_DIR,
    YamnetFrontEnd,
    load_convs,
    yamnet_class_names,
    yamnet_mel_matrix,
)
from engines.model import MASKED_LOGIT, Arch, FusionNet, count_macs, example_inputs
from engines.spec import ModelSpec


def test_output_shapes(tiny_model, tiny_spec):
    logits, emb = tiny_model(*example_inputs(tiny_spec, batch=3))
    assert logits.shape == (3, len(tiny_spec.classes))
    assert emb.shape == (3, tiny_spec.embedding_dim)


def test_modality_gates(tiny_model, tiny_spec):
    """Class a needs audio, b video, c either: a missing modality turns its classes off."""
    video, audio, ones, _ = example_inputs(tiny_spec, batch=2, seed=3)
    zeros = torch.zeros(2)
    with torch.no_grad():
        both = tiny_model(video, audio, ones, ones)[0]
        no_audio, emb = tiny_model(video, audio, ones, zeros)
        no_video = tiny_model(video, audio, zeros, ones)[0]
        nothing = tiny_model(video, audio, zeros, zeros)[0]
    assert (both > MASKED_LOGIT + 1).all()
    assert torch.equal(no_audio[:, 0], torch.full((2,), MASKED_LOGIT))
    assert (no_audio[:, 1:] > MASKED_LOGIT + 1).all()
    assert torch.equal(no_video[:, 1], torch.full((2,), MASKED_LOGIT))
    assert (no_video[:, [0, 2]] > MASKED_LOGIT + 1).all()
    assert torch.equal(nothing, torch.full_like(nothing, MASKED_LOGIT))
    assert torch.equal(emb[:, :1024], torch.zeros(2, 1024))  # the audio part of the embedding


def test_a_video_class_never_sees_the_audio(tiny_model, tiny_spec):
    """Class b needs video: other audio changes the audio class a, never b (its head has no audio inputs)."""
    video, audio, ones, _ = example_inputs(tiny_spec, batch=2, seed=6)
    other = torch.nn.functional.pad(audio[:, 8000:], (0, 8000)) * 0.1
    with torch.no_grad():
        x, y = tiny_model(video, audio, ones, ones)[0], tiny_model(video, other, ones, ones)[0]
    assert torch.equal(x[:, 1], y[:, 1])
    assert not torch.allclose(x[:, 0], y[:, 0])


def test_masked_audio_ignores_its_content(tiny_model, tiny_spec):
    video, audio, ones, _ = example_inputs(tiny_spec, batch=2, seed=4)
    zeros = torch.zeros(2)
    with torch.no_grad():
        a = tiny_model(video, audio, ones, zeros)[0]
        b = tiny_model(video, torch.rand_like(audio) * 2 - 1, ones, zeros)[0]
    assert torch.equal(a, b)


def test_frontend_matches_torch_stft():
    """YAMNet's features: |STFT| (400-sample periodic Hann, 160 hop, 512-point FFT) -> mel -> log."""
    audio = torch.rand(2, 16000) * 2 - 1
    ours = YamnetFrontEnd()(audio)
    # torch centres a short window inside the FFT frame; ours starts at 0: compare from a shifted signal
    shifted = torch.nn.functional.pad(audio, (56, 0))
    ref = torch.stft(shifted, 512, 160, win_length=400, window=torch.hann_window(400, periodic=True),
                     center=False, return_complex=True).abs()
    mel = torch.from_numpy(yamnet_mel_matrix())
    ref_lm = torch.log(torch.einsum("bfn,fm->bnm", ref[:, :, :96], mel) + 0.001)
    assert ours.shape == (2, 1, 96, 64)
    assert torch.allclose(ours[:, 0], ref_lm, atol=2e-3)


def test_mel_matrix_is_htk_125_to_7500():
    m = yamnet_mel_matrix()
    assert m.shape == (257, 64)
    assert (m[0] == 0).all()  # no DC
    freqs = np.linspace(0, 8000, 257)
    peaks = freqs[m.argmax(axis=0)]
    assert 125 < peaks[0] < 200 and 7000 < peaks[-1] < 7500
    assert np.all(np.diff(peaks) >= 0) and abs(m.max() - 1.0) < 0.1


def test_audioset_mapped_class_is_the_max_of_its_logits(tiny_arch):
    names = yamnet_class_names()
    idx = [names.index("Siren"), names.index("Civil defense siren")]
    spec = ModelSpec(name="m", frames=2, height=64, width=64, classes=("a", "siren_as"),
                     modality={"siren_as": "audio"}, audioset={"siren_as": idx}, embedding_dim=1046)
    model = FusionNet(spec, tiny_arch).eval()
    video, audio, ones, _ = example_inputs(spec, batch=2, seed=5)
    with torch.no_grad():
        logits = model(video, audio, ones, ones)[0]
        _, as_logits = model.yamnet(model.frontend(audio))
    assert torch.allclose(logits[:, 1], as_logits[:, idx].amax(dim=1))


def test_a_tone_sounds_like_a_tone_to_yamnet(tiny_model):
    """The pretrained audio backbone hears a pure 1 kHz tone as one of AudioSet's tone classes."""
    t = torch.arange(16000) / 16000.0
    tone = (0.5 * torch.sin(2 * np.pi * 1000 * t))[None]
    with torch.no_grad():
        _, logits = tiny_model.yamnet(tiny_model.frontend(tone))
    top = [yamnet_class_names()[i] for i in logits[0].argsort(descending=True)[:5]]
    assert {"Sine wave", "Beep, bleep", "Tuning fork", "Pure tone"} & set(top), top


def test_spec_validation(tiny_arch):
    with pytest.raises(ValueError, match="classes"):
        FusionNet(ModelSpec(embedding_dim=8), tiny_arch)
    with pytest.raises(ValueError, match="pose_frames"):
        FusionNet(ModelSpec(classes=("a",), frames=1, height=32, width=32), tiny_arch)
    with pytest.raises(ValueError, match="evenly spaced"):
        FusionNet(ModelSpec(classes=("a",), frames=8), Arch(pose_frames=(0, 1, 3)))
    with pytest.raises(ValueError, match="modality"):
        FusionNet(ModelSpec(classes=("a",), frames=2, height=32, width=32, modality={"a": "smell"}), tiny_arch)


def test_load_convs_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match="Conv"):
        load_convs(torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3)), BACKBONE_DIR / "yamnet.onnx")


def test_backbone_files_match_their_sums():
    sums = dict(reversed(line.split("  ")) for line in (BACKBONE_DIR / "SHA256SUMS").read_text().splitlines())
    for name in ("yamnet.onnx", "yamnet.bin", "movenet_multipose.onnx", "yamnet_class_map.csv"):
        assert hashlib.sha256((BACKBONE_DIR / name).read_bytes()).hexdigest() == sums[f"output {name}"]


def test_arch_round_trip_and_cost(tiny_arch):
    assert Arch.from_dict(tiny_arch.to_dict()) == tiny_arch
    spec = ModelSpec(classes=("a",), frames=8, height=160, width=256, embedding_dim=1046)
    macs = count_macs(FusionNet(spec), spec)
    assert 50e6 < macs < 200e6  # YAMNet (~70 M) and its front end; the pose model runs in ONNX Runtime
