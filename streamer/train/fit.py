"""Fit the fusion model's heads on cached backbone features (seconds to minutes on a CPU).

A `Table` holds windows of any number of datasets: features, masks, multi-label targets, and a loss
mask that says which targets each window defines (a dataset only speaks for its own classes, plus
the classes it is a negative for). The heads are trained with masked binary cross-entropy, full
precision, AdamW, a fixed number of epochs (no early stopping on data that is reported).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

GROUP_KEYS = ("audio", "people", "cues")


@dataclass
class Table:
    feats: dict[str, np.ndarray]  # key -> [N, D]
    am: np.ndarray  # [N]
    vm: np.ndarray  # [N]
    y: np.ndarray  # [N, K]
    defined: np.ndarray  # [N, K] 1 where the target counts
    clip: np.ndarray  # [N] global clip id
    weight: np.ndarray  # [N] per-window loss weight
    group: np.ndarray | None = None  # [N] the recording a window comes from (augmented copies share it); None: clip

    def groups(self) -> np.ndarray:
        return self.clip if self.group is None else self.group

    def __len__(self) -> int:
        return len(self.am)

    def take(self, idx: np.ndarray) -> Table:
        return Table({k: v[idx] for k, v in self.feats.items()}, self.am[idx], self.vm[idx], self.y[idx],
                     self.defined[idx], self.clip[idx], self.weight[idx], self.groups()[idx])

    @staticmethod
    def concat(parts: list[Table]) -> Table:
        keys = parts[0].feats.keys()
        return Table({k: np.concatenate([p.feats[k] for p in parts]) for k in keys},
                     *(np.concatenate([getattr(p, a) for p in parts]) for a in ("am", "vm", "y", "defined", "clip",
                                                                               "weight")),
                     np.concatenate([p.groups() for p in parts]))


@dataclass
class FitConfig:
    epochs: int = 40
    batch: int = 32  # clips per step
    sharpness: float = 3.0  # soft maximum over a clip's windows (MIL pooling)
    lr: float = 2e-3
    weight_decay: float = 0.2
    seed: int = 0
    balance: bool = True  # weight positives of each class up to the negatives' total (capped at 10x)


def _stats(t: Table, groups: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    means, stds = [], []
    for g, m in groups:
        rows = (t.am if m == "audio" else t.vm) > 0
        x = t.feats[g][rows] if rows.any() else t.feats[g]
        means.append(x.mean(axis=0))
        stds.append(x.std(axis=0) + 1e-3)
    return np.concatenate(means).astype(np.float32), np.concatenate(stds).astype(np.float32)


def _pool(logits: "torch.Tensor", seg: "torch.Tensor", n: int, sharpness: float) -> "torch.Tensor":
    """Per clip, a soft maximum of its windows' logits: logsumexp(r * x) / r - log(count) / r."""
    import torch

    r = sharpness
    m = torch.full((n, logits.shape[1]), -1e4, dtype=logits.dtype).index_reduce(0, seg, logits * r, "amax")
    e = torch.zeros_like(m).index_add(0, seg, torch.exp(logits * r - m[seg]))
    count = torch.zeros(n, dtype=logits.dtype).index_add(0, seg, torch.ones_like(seg, dtype=logits.dtype))
    return (m + torch.log(e) - torch.log(count)[:, None]) / r


def fit_heads(model, t: Table, cfg: FitConfig, progress: bool = False, seconds: float = 0.0) -> list[float]:
    """Train `model.heads` (an engines.model.Heads) in place on `t`; returns the loss per epoch.

    Multiple-instance learning: a clip's label says the event is somewhere in it, so each clip's
    window logits are pooled by a soft maximum (`FitConfig.sharpness`) and the loss is taken per clip.
    `seconds` > 0: stop after the epoch that passes this time budget.
    """
    import time

    import torch
    from tqdm import tqdm

    heads = model.heads
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    mean, std = _stats(t, [(g, m) for g, _, m in heads.groups])
    heads.mean.copy_(torch.from_numpy(mean))
    heads.std.copy_(torch.from_numpy(std))
    clips, inverse = np.unique(t.clip, return_inverse=True)
    windows = [np.flatnonzero(inverse == i) for i in range(len(clips))]
    first = np.array([w[0] for w in windows])
    cols = [list(model.spec.classes).index(c) for c in model.trained]  # the table is over spec.classes
    y_c, d_c, w_c = t.y[first][:, cols], t.defined[first][:, cols], t.weight[first]
    pos_w = np.ones(t.y.shape[1], np.float32)
    if cfg.balance:
        npos, nneg = (y_c * d_c).sum(0), ((1 - y_c) * d_c).sum(0)
        pos_w = np.clip(nneg / np.maximum(npos, 1), 1.0, 10.0).astype(np.float32)
    feats = {g: torch.from_numpy(t.feats[g]) for g, _, _ in heads.groups}
    am, vm = torch.from_numpy(t.am[:, None]), torch.from_numpy(t.vm[:, None])
    y, d, w = torch.from_numpy(y_c), torch.from_numpy(d_c), torch.from_numpy(w_c[:, None])
    pw = torch.from_numpy(pos_w)
    opt = torch.optim.AdamW([p for p in heads.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, (len(clips) + cfg.batch - 1) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    losses: list[float] = []
    t0 = time.monotonic()
    heads.train()
    for _ in tqdm(range(cfg.epochs), desc="fit heads", unit="epoch", disable=not progress):
        total = 0.0
        for b in np.array_split(rng.permutation(len(clips)), max(1, len(clips) // cfg.batch)):
            i = torch.from_numpy(np.concatenate([windows[c] for c in b]))
            seg = torch.from_numpy(np.concatenate([np.full(len(windows[c]), k) for k, c in enumerate(b)]))
            logits = _pool(heads({g: f[i] for g, f in feats.items()}, am[i], vm[i]), seg, len(b), cfg.sharpness)
            bt = torch.from_numpy(b)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[bt], pos_weight=pw,
                                                                        reduction="none")
            dw = d[bt] * w[bt]
            loss = (loss * dw).sum() / torch.clamp(dw.sum(), min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        losses.append(total / len(clips))
        if seconds and time.monotonic() - t0 > seconds:
            log.info("time budget reached after %d of %d epochs", len(losses), cfg.epochs)
            break
    heads.eval()
    return losses


def predict(model, t: Table, batch: int = 1024) -> np.ndarray:
    """Sigmoid scores [N, K] in `model.spec.classes` order (gated like the exported graph)."""
    import torch

    out = []
    keys = [*GROUP_KEYS, "audioset"]
    with torch.inference_mode():
        for s in range(0, len(t), batch):
            f = {k: torch.from_numpy(t.feats[k][s : s + batch]) for k in keys}
            am = torch.from_numpy(t.am[s : s + batch, None])
            vm = torch.from_numpy(t.vm[s : s + batch, None])
            out.append(torch.sigmoid(model.logits(f, am, vm)).numpy())
    return np.concatenate(out)
