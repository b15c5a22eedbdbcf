"""Train the default fusion model: a seeded, time-budgeted run on the labelled datasets.

Batches mix the datasets in fixed proportions (urbansound8k is 10x larger than the others), plus a few
windows of UCSD Ped2's normal footage as "video, no event". Each such step is followed by
`audio_steps` audio-only steps (urbansound8k + glass_break, no video): the video branch costs ~3x
the audio branch per window, so these give the audio classes several times more windows in the same
time budget (short ablations: urbansound8k fold-2 accuracy and validation mAP rose with 0, 1, 2 extra
steps at equal wall time, fight clip AUC unchanged within noise). Augmentation (engines/train/augment.py):
audio events are mixed into backgrounds (glass_break `background`, fight audio, Ped2-free) at random
SNRs, reverberated through synthetic room responses, shifted and scaled; video gets one random crop per
window, flips, brightness/contrast, blur, JPEG compression and time reversal. On fight clips the audio
is randomly masked or silenced (so "silence means no fight" cannot be learnt); audio-only clips are
sometimes paired with a video without a fight (so "video present" does not veto audio classes).

Checkpoints (`last.pt`: model, optimiser, step, elapsed time, generator states) are written at every
evaluation; `resume=True` continues a run from there on the same schedule.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.train.augment import augment_audio, augment_video, mix_at_snr
from engines.train.data import CLASSES, DATASETS, URBAN_CLASSES, WindowSet, decode_dataset
from engines.train.metrics import (
    average_precision,
    best_f1_threshold,
    false_alarm_rate,
    far_threshold,
    prf,
    roc_auc,
)

log = logging.getLogger(__name__)

BATCH_MIX = {"urbansound8k": 18, "glass_break": 6, "fight": 10, "ucsd_ped2": 2}
AUDIO_MIX = {"urbansound8k": 30, "glass_break": 6}  # the audio-only steps (TrainConfig.audio_steps)
DEFAULT_FAR = 0.02  # per-class thresholds: at most this fraction of validation negative windows above
DEFAULT_FAR_VIDEO = 0.2  # the same for fight (its validation negatives are only ~50 no_fight windows)


def default_arch():
    """The architecture of the default model (engines.model.Arch() stays the small skeleton)."""
    from engines.model import Arch

    return Arch(audio_channels=(32, 64, 128, 256), audio_strides=(2, 2, 2, 1), audio_full=True,
                spatial_grid=7, motion_to_fuse=True)


@dataclass
class TrainConfig:
    data_dir: Path
    out_dir: Path
    minutes: float = 5.0
    steps: int = 0  # > 0: a fixed number of steps instead of a time budget (reproducible)
    seed: int = 0
    lr: float = 3e-3
    weight_decay: float = 1e-2
    fused_dim: int = 128  # learned part of the embedding (the spatial block is appended)
    threads: int = 2
    eval_every_s: float = 600.0
    pair_video_p: float = 0.15  # audio-only clip paired with a video without a fight
    fight_audio_mask_p: float = 0.35
    fight_audio_silence_p: float = 0.15
    background_p: float = 0.5  # audio mixed into a background at 0..20 dB SNR
    reverb_p: float = 0.3
    far: float = DEFAULT_FAR
    far_video: float = DEFAULT_FAR_VIDEO
    mix_p: float = 0.5  # urbansound8k: mix in a second urbansound8k window at -5..5 dB, targets the union
    select: str = "final"  # "final": the last step (no selection on validation) | "best": best val mAP
    batch_mix: dict[str, int] | None = None  # windows per dataset in a batch; None: BATCH_MIX
    # extra audio-only steps after each step of `batch_mix` (cheap: no video branch), each of `audio_mix`
    audio_steps: int = 2
    audio_mix: dict[str, int] = field(default_factory=lambda: dict(AUDIO_MIX))
    resume: bool = False
    arch: Any = None  # engines.model.Arch; None: default_arch()
    ckpt_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parents[2] / ".cache" / "train")


@dataclass
class Split:
    """Window indices of one dataset in one split, with targets."""

    ws: WindowSet
    idx: np.ndarray
    y: np.ndarray  # [N, K]


class Sampler:
    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.perm = rng.permutation(n)
        self.pos = 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos >= self.n:
                self.perm, self.pos = self.rng.permutation(self.n), 0
            m = min(k, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + m])
            self.pos += m
            k -= m
        return np.concatenate(out)


def _batch(
    splits: dict[str, Split], samplers: dict[str, Sampler], video_bank: list[np.ndarray],
    backgrounds: list[np.ndarray], cfg: TrainConfig, rng: np.random.Generator, spec_shape: tuple[int, ...],
    mix: dict[str, int] | None = None,
) -> tuple[np.ndarray, ...]:
    """One training batch (video, audio, video_mask, audio_mask, targets) with augmentation.

    video_bank: videos without a fight (paired with audio-only clips); backgrounds: audio windows that
    carry no labelled event (mixed under events). mix: windows per dataset (default cfg.batch_mix or
    BATCH_MIX); a mix without video datasets (the audio-only steps) pairs no videos, to stay cheap."""
    mix = mix or cfg.batch_mix or BATCH_MIX
    pair_p = cfg.pair_video_p if any(d in mix for d in ("fight", "ucsd_ped2")) else 0.0
    vids, auds, vms, ams, ys = [], [], [], [], []
    for name, k in mix.items():
        sp = splits.get(name)
        if sp is None or len(sp.idx) == 0:
            continue
        for j in samplers[name].take(k):
            i = sp.idx[j]
            ws = sp.ws
            am = float(ws.audio_mask[i])
            vm = float(ws.video_mask[i])
            v = ws.video[ws.video_row[i]] if vm > 0 else None
            y = sp.y[j]
            if am > 0:
                a = ws.audio[i]
                if name == "urbansound8k" and cfg.mix_p and rng.random() < cfg.mix_p:
                    j2 = int(rng.integers(0, len(sp.idx)))
                    a = mix_at_snr(a, ws.audio[sp.idx[j2]], float(rng.uniform(-5, 5)))
                    a /= max(1.0, float(np.abs(a).max()))
                    y = np.maximum(y, sp.y[j2])
                a = augment_audio(a, rng, backgrounds, p_background=cfg.background_p, p_reverb=cfg.reverb_p)
            else:
                a = np.zeros_like(ws.audio[i])
            if name == "fight":
                r = rng.random()
                if r < cfg.fight_audio_mask_p:
                    am = 0.0
                elif r < cfg.fight_audio_mask_p + cfg.fight_audio_silence_p:
                    a[:] = 0.0
            elif v is None and video_bank and pair_p and rng.random() < pair_p:
                v, vm = video_bank[int(rng.integers(0, len(video_bank)))], 1.0
            if am == 0:
                a[:] = 0.0
            if v is not None:
                v = augment_video(v, rng)
            vids.append(np.zeros(spec_shape, np.uint8) if v is None else v)
            auds.append(a)
            vms.append(vm)
            ams.append(am)
            ys.append(y)
    return (np.stack(vids), np.stack(auds).astype(np.float32), np.array(vms, np.float32),
            np.array(ams, np.float32), np.stack(ys))


@contextlib.contextmanager
def _restore_skip(model):
    try:
        yield
    finally:
        model.skip_absent = False


def predict(model, ws: WindowSet, idx: np.ndarray, batch: int = 64, video_override=None) -> np.ndarray:
    """Sigmoid scores [len(idx), K] of windows `idx` (eval mode, no augmentation).

    video_override: (video_bank, rows) to attach a video to windows that have none (robustness check).
    """
    import torch

    model.eval()
    model.skip_absent = True
    shape = (ws.video.shape[1:] if len(ws.video) else None)
    out = []
    with torch.inference_mode(), _restore_skip(model):
        for s in range(0, len(idx), batch):
            ii = idx[s : s + batch]
            vm = ws.video_mask[ii].copy()
            if video_override is not None:
                bank, rows = video_override
                v = bank[rows[np.arange(s, s + len(ii)) % len(rows)]]
                vm[:] = 1.0
            elif shape is not None:
                v = np.stack([ws.video[r] if r >= 0 else np.zeros(shape, np.uint8) for r in ws.video_row[ii]])
            else:
                v = np.zeros((len(ii), model.spec.frames, model.spec.height, model.spec.width, 3), np.uint8)
            logits, _ = model(
                torch.from_numpy(np.ascontiguousarray(v)), torch.from_numpy(ws.audio[ii]),
                torch.from_numpy(vm), torch.from_numpy(ws.audio_mask[ii]),
            )
            out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def _val_score(model, val: dict[str, Split]) -> tuple[float, dict[str, float]]:
    """Mean window-level AP over classes, on all validation windows of all datasets."""
    scores = np.concatenate([predict(model, sp.ws, sp.idx) for sp in val.values()])
    ys = np.concatenate([sp.y for sp in val.values()])
    aps = {c: average_precision(ys[:, k], scores[:, k]) for k, c in enumerate(CLASSES)}
    return float(np.nanmean(list(aps.values()))), aps


def _lr_at(frac: float, base: float, warmup: float = 0.05) -> float:
    if frac < warmup:
        return base * frac / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - warmup) / (1 - warmup))))


def _save_ckpt(path: Path, model, opt, step: int, elapsed: float, loss_ema: float | None, rng, samplers,
               history: list, best: tuple[float, int]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({
        "step": step, "elapsed": elapsed, "loss_ema": loss_ema, "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "samplers": {d: (s.rng.bit_generator.state, s.perm.tolist(), s.pos) for d, s in samplers.items()},
        "history": history, "best": list(best),
    }, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig) -> dict:
    """Decode (cached), train, pick thresholds; returns the model, spec, thresholds and a report."""
    import torch
    from tqdm import tqdm

    from engines.model import FusionNet, count_macs, count_params, spatial_dim
    from engines.spec import ModelSpec

    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    arch = cfg.arch or default_arch()
    spec = ModelSpec(classes=CLASSES, embedding_dim=cfg.fused_dim + spatial_dim(arch), version="0")

    datasets = [d for d in DATASETS if d != "ucsd_ped2" or (cfg.data_dir / d / "train").is_dir()]
    sets = {d: decode_dataset(cfg.data_dir, d, spec, workers=cfg.threads, seed=cfg.seed) for d in datasets}
    t_decoded = time.time()
    train_s: dict[str, Split] = {}
    val_s: dict[str, Split] = {}
    for d, ws in sets.items():
        y = ws.targets(CLASSES)
        for split, dst in (("train", train_s), ("val", val_s)):
            idx = np.nonzero(ws.split_mask(split))[0]
            if len(idx):
                dst[d] = Split(ws, idx, y[idx])
    fight = sets["fight"]
    fight_y = fight.targets(CLASSES)[:, CLASSES.index("fight")]
    train_nofight = np.nonzero(fight.split_mask("train") & (fight_y == 0) & (fight.video_row >= 0))[0]
    val_nofight = np.nonzero(fight.split_mask("val") & (fight_y == 0) & (fight.video_row >= 0))[0]
    video_bank = [fight.video[r] for r in fight.video_row[train_nofight]]
    if "ucsd_ped2" in sets:
        ped = sets["ucsd_ped2"]
        video_bank += [ped.video[r] for r in ped.video_row if r >= 0]
    # backgrounds: training audio that carries no labelled event
    backgrounds: list[np.ndarray] = []
    gb = sets["glass_break"]
    gb_y = gb.targets(CLASSES)[:, CLASSES.index("glass_break")]
    for i in np.nonzero(gb.split_mask("train") & (gb_y == 0) & (gb.audio_mask > 0))[0]:
        backgrounds.append(gb.audio[i])
    for i in np.nonzero(fight.split_mask("train") & (fight.audio_mask > 0))[0]:
        if np.sqrt(np.mean(fight.audio[i] ** 2)) > 1e-3:  # not digital silence
            backgrounds.append(fight.audio[i])
    log.info("video bank: %d windows without a fight; %d background audio windows", len(video_bank),
             len(backgrounds))

    model = FusionNet(spec, arch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bce = torch.nn.BCEWithLogitsLoss()
    samplers = {d: Sampler(len(sp.idx), np.random.default_rng(cfg.seed + i)) for i, (d, sp) in
                enumerate(train_s.items())}
    vshape = (spec.frames, spec.height, spec.width, 3)
    cfg.ckpt_dir.mkdir(parents=True, exist_ok=True)
    last_ckpt = cfg.ckpt_dir / "last.pt"
    budget = cfg.minutes * 60.0
    best = (-1.0, 0)
    history: list[dict] = []
    step, loss_ema, elapsed0 = 0, None, 0.0
    if cfg.resume and last_ckpt.is_file():
        ck = torch.load(last_ckpt, weights_only=False)
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed0, loss_ema = ck["step"], ck["elapsed"], ck["loss_ema"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        for d, (st, perm, pos) in ck["samplers"].items():
            if d in samplers:
                samplers[d].rng.bit_generator.state = st
                samplers[d].perm, samplers[d].pos = np.array(perm), pos
        history, best = ck["history"], tuple(ck["best"])
        log.info("resumed from %s at step %d (%.0f s trained)", last_ckpt, step, elapsed0)
    t0 = time.time() - elapsed0
    last_eval = time.time()
    bar = tqdm(total=cfg.steps if cfg.steps > 0 else int(budget), unit="step" if cfg.steps > 0 else "s",
               desc="train", initial=step if cfg.steps > 0 else int(elapsed0), mininterval=5.0)
    while True:
        elapsed = time.time() - t0
        frac = step / cfg.steps if cfg.steps > 0 else elapsed / budget
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = _lr_at(frac, cfg.lr)
        model.train()
        cycle = 1 + cfg.audio_steps
        mix = cfg.audio_mix if step % cycle else None
        v, a, vm, am, y = _batch(train_s, samplers, video_bank, backgrounds, cfg, rng, vshape, mix)
        logits, _ = model(torch.from_numpy(v), torch.from_numpy(a), torch.from_numpy(vm), torch.from_numpy(am))
        loss = bce(logits, torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        bar.set_postfix(step=step, loss=f"{loss_ema:.3f}", val_map=f"{history[-1]['val_map']:.3f}" if history else "-",
                        refresh=False)
        bar.update(1 if cfg.steps > 0 else int(time.time() - t0) - bar.n)
        if time.time() - last_eval >= cfg.eval_every_s:
            m_ap, _ = _val_score(model, val_s)
            history.append({"step": step, "seconds": round(time.time() - t0, 1), "loss": round(loss_ema, 4),
                            "val_map": round(m_ap, 4)})
            if m_ap > best[0]:
                best = (m_ap, step)
                torch.save({"step": step, "state_dict": model.state_dict()}, cfg.ckpt_dir / "best.pt")
            _save_ckpt(last_ckpt, model, opt, step, time.time() - t0, loss_ema, rng, samplers, history, best)
            log.info("step %d: loss %.4f, val mAP %.4f (best %.4f @ %d)", step, loss_ema, m_ap, *best)
            last_eval = time.time()
    bar.close()
    train_s_time = time.time() - t0
    _save_ckpt(last_ckpt, model, opt, step, train_s_time, loss_ema, rng, samplers, history, best)
    m_ap, _ = _val_score(model, val_s)
    history.append({"step": step, "seconds": round(train_s_time, 1), "loss": round(loss_ema or 0, 4),
                    "val_map": round(m_ap, 4)})
    kept = step
    if cfg.select == "best" and m_ap < best[0]:
        model.load_state_dict(torch.load(cfg.ckpt_dir / "best.pt", weights_only=True)["state_dict"])
        kept = best[1]
        log.info("keeping the best checkpoint (step %d, val mAP %.4f)", best[1], best[0])
    torch.save({"step": kept, "arch": arch.to_dict(), "state_dict": model.state_dict()}, cfg.ckpt_dir / "final.pt")

    report = evaluate(model, val_s, fight.video, fight.video_row[val_nofight], far=cfg.far, far_video=cfg.far_video)
    thresholds = {c: report["classes"][c]["threshold"] for c in CLASSES}
    report.update(
        steps=step, kept_step=kept, select=cfg.select, history=history, train_seconds=round(train_s_time, 1),
        decode_seconds=round(t_decoded - t_start, 1), params=count_params(model),
        macs=count_macs(model, spec), train_windows={d: len(sp.idx) for d, sp in train_s.items()},
        val_windows={d: len(sp.idx) for d, sp in val_s.items()},
        train_clips={d: sum(c.split == "train" for c in ws.clips) for d, ws in sets.items()},
        val_clips={d: sum(c.split == "val" for c in ws.clips) for d, ws in sets.items()},
        failed_clips={d: ws.failed for d, ws in sets.items() if ws.failed},
        batch_mix=dict(cfg.batch_mix or BATCH_MIX), arch=arch.to_dict(), config={
            k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items() if k != "arch"},
    )
    return {"model": model, "spec": spec, "thresholds": thresholds, "report": report, "t_start": t_start}


AUDIO_CLASSES = URBAN_CLASSES + ("glass_break",)
VIDEO_CLASSES = ("fight",)


def evaluate(model, val: dict[str, Split], video_bank: np.ndarray, nofight_rows: np.ndarray,
             far: float = DEFAULT_FAR, far_video: float = DEFAULT_FAR_VIDEO) -> dict:
    """Per-class window metrics and thresholds, and per-dataset clip metrics.

    Threshold of a class: the lowest at which at most `far` (`far_video` for fight) of the validation
    negative windows that could carry it score above (audio classes: every window with audio that is not of the class; fight:
    every window with video that is not a fight)."""
    scores = {d: predict(model, sp.ws, sp.idx) for d, sp in val.items()}
    s_all = np.concatenate(list(scores.values()))
    y_all = np.concatenate([sp.y for sp in val.values()])
    am_all = np.concatenate([sp.ws.audio_mask[sp.idx] for sp in val.values()]) > 0
    vm_all = np.concatenate([sp.ws.video_mask[sp.idx] for sp in val.values()]) > 0
    classes: dict[str, dict[str, Any]] = {}
    for k, c in enumerate(CLASSES):
        elig = vm_all if c in VIDEO_CLASSES else am_all
        y, s = y_all[elig, k], s_all[elig, k]
        rate = far_video if c in VIDEO_CLASSES else far
        thr = far_threshold(y, s, rate)
        p, r, f1 = prf(y, s, thr)
        thr_f1, how = best_f1_threshold(y, s)
        classes[c] = {"ap": average_precision(y_all[:, k], s_all[:, k]), "threshold": round(thr, 4),
                      "how": f"false-alarm rate <= {rate:g} of {int((y == 0).sum())} negative windows",
                      "far": false_alarm_rate(y, s, thr), "precision": p, "recall": r, "f1": f1,
                      "f1_threshold": round(thr_f1, 4), "f1_at_f1_threshold": prf(y, s, thr_f1)[2],
                      "val_positives": int(y_all[:, k].sum()), "val_negatives": int((y == 0).sum())}
    out: dict = {"classes": classes, "far": far, "far_video": far_video,
                 "window_map": float(np.nanmean([v["ap"] for v in classes.values()]))}

    def clip_scores(d: str, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        sp = val[d]
        clip_ids = sp.ws.clip[sp.idx]
        uniq = np.unique(clip_ids)
        mean = np.stack([s[clip_ids == c].mean(0) for c in uniq])
        mx = np.stack([s[clip_ids == c].max(0) for c in uniq])
        labels = [sp.ws.clips[c].label for c in uniq]
        return mean, mx, labels

    ui = [CLASSES.index(c) for c in URBAN_CLASSES]
    mean, mx, labels = clip_scores("urbansound8k", scores["urbansound8k"])
    acc = {agg: float(np.mean([URBAN_CLASSES[i] == lab for i, lab in zip(m[:, ui].argmax(1), labels)]))
           for agg, m in (("mean", mean), ("max", mx))}
    out["urbansound8k"] = {"clip_accuracy": acc["mean"], "clip_accuracy_max": acc["max"],
                           "clips": len(labels), "split": "fold 1 train, fold 2 validation"}
    if len(nofight_rows):
        # robustness: the same audio with an unrelated video attached (a seeded subset of 200 clips:
        # the video branch is the expensive one)
        sp = val["urbansound8k"]
        clip_ids = sp.ws.clip[sp.idx]
        uniq = np.unique(clip_ids)
        pick = np.random.default_rng(0).choice(uniq, size=min(200, len(uniq)), replace=False)
        sub = Split(sp.ws, sp.idx[np.isin(clip_ids, pick)], sp.y[np.isin(clip_ids, pick)])
        s_v = predict(model, sub.ws, sub.idx, video_override=(video_bank, nofight_rows))
        sub_ids = sub.ws.clip[sub.idx]
        m_v = np.stack([s_v[sub_ids == c].mean(0) for c in np.unique(sub_ids)])
        lab_v = [sub.ws.clips[c].label for c in np.unique(sub_ids)]
        pred_v = [URBAN_CLASSES[i] for i in m_v[:, ui].argmax(1)]
        out["urbansound8k"]["clip_accuracy_with_video"] = float(
            np.mean([p == lab for p, lab in zip(pred_v, lab_v)]))
        out["urbansound8k"]["clip_accuracy_with_video_clips"] = len(lab_v)
    for d, c in (("glass_break", "glass_break"), ("fight", "fight")):
        k = CLASSES.index(c)
        mean, mx, labels = clip_scores(d, scores[d])
        y = np.array([lab == c for lab in labels])
        thr = float(classes[c]["threshold"])
        best_acc = max(float(np.mean((mx[:, k] >= t) == y)) for t in np.r_[mx[:, k], 1.1])
        out[d] = {
            "clip_auc_mean": roc_auc(y, mean[:, k]), "clip_ap_mean": average_precision(y, mean[:, k]),
            "clip_auc_max": roc_auc(y, mx[:, k]), "clip_ap_max": average_precision(y, mx[:, k]),
            "clip_accuracy_mean_at_threshold": float(np.mean((mean[:, k] >= thr) == y)),
            "clip_accuracy_max_at_threshold": float(np.mean((mx[:, k] >= thr) == y)),
            "clip_accuracy_max_oracle": best_acc,
            "clips": len(labels), "positives": int(y.sum()), "negatives": int((~y).sum()),
            "split": f"~{int(100 * 0.2)}% of source_ids (seeded) for validation",
        }
    # the fight score must not depend on audio being present: compare with audio masked
    sp = val["fight"]
    saved = sp.ws.audio_mask.copy()
    try:
        sp.ws.audio_mask[:] = 0.0
        s_na = predict(model, sp.ws, sp.idx)
    finally:
        sp.ws.audio_mask[:] = saved
    mean_na, mx_na, labels = clip_scores("fight", s_na)
    y = np.array([lab == "fight" for lab in labels])
    out["fight"]["clip_auc_mean_audio_masked"] = roc_auc(y, mean_na[:, CLASSES.index("fight")])
    out["fight"]["clip_auc_max_audio_masked"] = roc_auc(y, mx_na[:, CLASSES.index("fight")])
    return out
