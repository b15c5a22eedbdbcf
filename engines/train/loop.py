"""Train the default fusion model: a short, seeded run on the three labelled datasets.

Batches mix the datasets in fixed proportions (urbansound8k is 10x larger than the others).
Augmentations: random gain and shift on audio; horizontal flip on video; on fight clips the audio is
randomly masked or silenced (so "silence means no fight" cannot be learnt); audio-only clips are
sometimes paired with a no_fight video (so "video present" does not veto audio classes).
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

from engines.train.data import CLASSES, DATASETS, URBAN_CLASSES, WindowSet, decode_dataset
from engines.train.metrics import average_precision, best_f1_threshold, prf, roc_auc

log = logging.getLogger(__name__)

BATCH_MIX = {"urbansound8k": 16, "glass_break": 6, "fight": 10}


@dataclass
class TrainConfig:
    data_dir: Path
    out_dir: Path
    minutes: float = 5.0
    steps: int = 0  # > 0: a fixed number of steps instead of a time budget (reproducible)
    seed: int = 0
    lr: float = 3e-3
    weight_decay: float = 1e-2
    embedding_dim: int = 128
    threads: int = 2
    eval_every_s: float = 60.0
    pair_video_p: float = 0.3  # audio-only clip paired with a no_fight video
    fight_audio_mask_p: float = 0.35
    fight_audio_silence_p: float = 0.15
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
    splits: dict[str, Split], samplers: dict[str, Sampler], nofight_rows: np.ndarray, video_bank: np.ndarray,
    cfg: TrainConfig, rng: np.random.Generator, spec_shape: tuple[int, ...],
) -> tuple[np.ndarray, ...]:
    vids, auds, vms, ams, ys = [], [], [], [], []
    for name, k in BATCH_MIX.items():
        sp = splits[name]
        for j in samplers[name].take(k):
            i = sp.idx[j]
            ws = sp.ws
            a = ws.audio[i].copy()
            am = float(ws.audio_mask[i])
            vm = float(ws.video_mask[i])
            v = ws.video[ws.video_row[i]] if vm > 0 else None
            if am > 0:
                a *= 10 ** (rng.uniform(-18, 6) / 20)
                if rng.random() < 0.5:
                    a = np.roll(a, int(rng.integers(0, len(a))))
                np.clip(a, -1, 1, out=a)
            if name == "fight":
                r = rng.random()
                if r < cfg.fight_audio_mask_p:
                    am = 0.0
                elif r < cfg.fight_audio_mask_p + cfg.fight_audio_silence_p:
                    a[:] = 0.0
            elif v is None and len(nofight_rows) and rng.random() < cfg.pair_video_p:
                v, vm = video_bank[nofight_rows[rng.integers(0, len(nofight_rows))]], 1.0
            if am == 0:
                a[:] = 0.0
            if v is not None and rng.random() < 0.5:
                v = v[:, :, ::-1]
            vids.append(np.zeros(spec_shape, np.uint8) if v is None else v)
            auds.append(a)
            vms.append(vm)
            ams.append(am)
            ys.append(sp.y[j])
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


def train(cfg: TrainConfig) -> dict:
    """Decode (cached), train, pick thresholds, export; returns everything the model card reports."""
    import torch
    from tqdm import tqdm

    from engines.model import Arch, FusionNet, count_macs, count_params
    from engines.spec import ModelSpec

    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    spec = ModelSpec(classes=CLASSES, embedding_dim=cfg.embedding_dim, version="0")

    sets = {d: decode_dataset(cfg.data_dir, d, spec, workers=cfg.threads, seed=cfg.seed) for d in DATASETS}
    t_decoded = time.time()
    train_s: dict[str, Split] = {}
    val_s: dict[str, Split] = {}
    for d, ws in sets.items():
        y = ws.targets(CLASSES)
        for split, dst in (("train", train_s), ("val", val_s)):
            idx = np.nonzero(ws.split_mask(split))[0]
            dst[d] = Split(ws, idx, y[idx])
    fight = sets["fight"]
    fight_y = fight.targets(CLASSES)[:, CLASSES.index("fight")]
    train_nofight = np.nonzero(fight.split_mask("train") & (fight_y == 0) & (fight.video_row >= 0))[0]
    val_nofight = np.nonzero(fight.split_mask("val") & (fight_y == 0) & (fight.video_row >= 0))[0]
    nofight_rows = fight.video_row[train_nofight]

    model = FusionNet(spec, Arch())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bce = torch.nn.BCEWithLogitsLoss()
    samplers = {d: Sampler(len(sp.idx), np.random.default_rng(cfg.seed + i)) for i, (d, sp) in
                enumerate(train_s.items())}
    vshape = (spec.frames, spec.height, spec.width, 3)
    cfg.ckpt_dir.mkdir(parents=True, exist_ok=True)
    budget = cfg.minutes * 60.0
    best = (-1.0, 0)
    history = []
    step, loss_ema = 0, None
    t0 = time.time()
    last_eval = t0
    bar = tqdm(total=cfg.steps if cfg.steps > 0 else int(budget), unit="step" if cfg.steps > 0 else "s",
               desc="train")
    while True:
        elapsed = time.time() - t0
        frac = step / cfg.steps if cfg.steps > 0 else elapsed / budget
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = _lr_at(frac, cfg.lr)
        model.train()
        v, a, vm, am, y = _batch(train_s, samplers, nofight_rows, fight.video, cfg, rng, vshape)
        logits, _ = model(torch.from_numpy(v), torch.from_numpy(a), torch.from_numpy(vm), torch.from_numpy(am))
        loss = bce(logits, torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        bar.set_postfix(step=step, loss=f"{loss_ema:.3f}", best_map=f"{best[0]:.3f}")
        bar.update(1 if cfg.steps > 0 else int(time.time() - t0) - bar.n)
        if time.time() - last_eval >= cfg.eval_every_s:
            m_ap, _ = _val_score(model, val_s)
            history.append({"step": step, "seconds": round(time.time() - t0, 1), "loss": round(loss_ema, 4),
                            "val_map": round(m_ap, 4)})
            torch.save({"step": step, "state_dict": model.state_dict()}, cfg.ckpt_dir / "last.pt")
            if m_ap > best[0]:
                best = (m_ap, step)
                torch.save({"step": step, "state_dict": model.state_dict()}, cfg.ckpt_dir / "best.pt")
            log.info("step %d: loss %.4f, val mAP %.4f (best %.4f @ %d)", step, loss_ema, m_ap, *best)
            last_eval = time.time()
    bar.close()
    train_s_time = time.time() - t0
    m_ap, _ = _val_score(model, val_s)
    history.append({"step": step, "seconds": round(train_s_time, 1), "loss": round(loss_ema or 0, 4),
                    "val_map": round(m_ap, 4)})
    if m_ap >= best[0]:
        best = (m_ap, step)
    else:
        model.load_state_dict(torch.load(cfg.ckpt_dir / "best.pt", weights_only=True)["state_dict"])
        log.info("keeping the best checkpoint (step %d, val mAP %.4f)", best[1], best[0])
    torch.save({"step": best[1], "state_dict": model.state_dict()}, cfg.ckpt_dir / "final.pt")

    report = evaluate(model, val_s, fight.video, fight.video_row[val_nofight])
    thresholds = {c: report["classes"][c]["threshold"] for c in CLASSES}
    report.update(
        steps=step, best_step=best[1], history=history, train_seconds=round(train_s_time, 1),
        decode_seconds=round(t_decoded - t_start, 1), params=count_params(model),
        macs=count_macs(model, spec), train_windows={d: len(sp.idx) for d, sp in train_s.items()},
        val_windows={d: len(sp.idx) for d, sp in val_s.items()},
        train_clips={d: sum(c.split == "train" for c in ws.clips) for d, ws in sets.items()},
        val_clips={d: sum(c.split == "val" for c in ws.clips) for d, ws in sets.items()},
        failed_clips={d: ws.failed for d, ws in sets.items() if ws.failed},
    )
    return {"model": model, "spec": spec, "thresholds": thresholds, "report": report, "t_start": t_start}


def evaluate(model, val: dict[str, Split], video_bank: np.ndarray, nofight_rows: np.ndarray) -> dict:
    """Per-class window metrics with chosen thresholds, and per-dataset clip metrics."""
    scores = {d: predict(model, sp.ws, sp.idx) for d, sp in val.items()}
    s_all = np.concatenate(list(scores.values()))
    y_all = np.concatenate([sp.y for sp in val.values()])
    classes: dict[str, dict[str, Any]] = {}
    for k, c in enumerate(CLASSES):
        thr, how = best_f1_threshold(y_all[:, k], s_all[:, k])
        p, r, f1 = prf(y_all[:, k], s_all[:, k], thr)
        classes[c] = {"ap": average_precision(y_all[:, k], s_all[:, k]), "threshold": round(thr, 4),
                      "how": how, "precision": p, "recall": r, "f1": f1, "val_positives": int(y_all[:, k].sum())}
    out: dict = {"classes": classes,
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
    mean, _, labels = clip_scores("urbansound8k", scores["urbansound8k"])
    pred = [URBAN_CLASSES[i] for i in mean[:, ui].argmax(1)]
    out["urbansound8k"] = {
        "clip_accuracy": float(np.mean([p == lab for p, lab in zip(pred, labels)])),
        "clips": len(labels), "split": "fold 1 train, fold 2 validation",
    }
    if len(nofight_rows):
        sp = val["urbansound8k"]
        s_v = predict(model, sp.ws, sp.idx, video_override=(video_bank, nofight_rows))
        m_v, _, _ = clip_scores("urbansound8k", s_v)
        pred_v = [URBAN_CLASSES[i] for i in m_v[:, ui].argmax(1)]
        out["urbansound8k"]["clip_accuracy_with_video"] = float(
            np.mean([p == lab for p, lab in zip(pred_v, labels)]))
    for d, c, neg in (("glass_break", "glass_break", "background"), ("fight", "fight", "no_fight")):
        k = CLASSES.index(c)
        mean, _mx, labels = clip_scores(d, scores[d])
        y = np.array([lab == c for lab in labels])
        thr = float(classes[c]["threshold"])
        out[d] = {
            "clip_auc_mean": roc_auc(y, mean[:, k]), "clip_ap_mean": average_precision(y, mean[:, k]),
            "clip_accuracy_mean_at_threshold": float(np.mean((mean[:, k] >= thr) == y)),
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
    mean_na, _, labels = clip_scores("fight", s_na)
    y = np.array([lab == "fight" for lab in labels])
    out["fight"]["clip_auc_mean_audio_masked"] = roc_auc(y, mean_na[:, CLASSES.index("fight")])
    return out
