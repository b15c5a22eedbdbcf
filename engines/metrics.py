"""Small, dependency-free metrics for multi-label scores (numpy only)."""

from __future__ import annotations

import numpy as np


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as sklearn's average_precision_score)."""
    y = np.asarray(y, bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    tp = np.cumsum(y)
    # last index of each run of tied scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = tp[last]
    fp = last + 1 - tp
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), float)
    ss = s[order]
    i = 0
    while i < len(ss):  # average ranks over ties
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def prf(y: np.ndarray, s: np.ndarray, thr: float) -> tuple[float, float, float]:
    y = np.asarray(y, bool)
    p = s >= thr
    tp = float((p & y).sum())
    prec = tp / max(p.sum(), 1)
    rec = tp / max(y.sum(), 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-12)
    return prec, rec, f1


def best_f1_threshold(
    y: np.ndarray, s: np.ndarray, min_pos: int = 10, default: float = 0.5, lo: float = 0.05, hi: float = 0.95
) -> tuple[float, str]:
    """Threshold maximising F1 on (y, s), clamped to [lo, hi]; `default` when fewer than `min_pos`
    positives make the estimate meaningless. Returns (threshold, how it was chosen)."""
    y = np.asarray(y, bool)
    if y.sum() < min_pos:
        return default, f"default (only {int(y.sum())} positives)"
    cands = np.unique(s)
    best_i, best_f = 0, -1.0
    for i, t in enumerate(cands):
        f = prf(y, s, float(t))[2]
        if f > best_f:
            best_i, best_f = i, f
    # halfway to the next lower score: the same decisions on these data, a margin for new data
    t = cands[best_i] if best_i == 0 else 0.5 * (cands[best_i] + cands[best_i - 1])
    return float(np.clip(t, lo, hi)), "max F1"


def far_threshold(y: np.ndarray, s: np.ndarray, far: float, lo: float = 0.05, hi: float = 0.99) -> float:
    """The lowest threshold at which at most `far` of the negatives (y == 0) score >= it: halfway
    between the first negative that may stay above and the first that must fall below (a margin for
    new data), clamped to [lo, hi]. With no negatives, `lo`."""
    neg = np.sort(np.asarray(s, np.float64)[~np.asarray(y, bool)])[::-1]
    if len(neg) == 0:
        return lo
    k = int(np.floor(far * len(neg)))  # negatives allowed at or above the threshold
    if k >= len(neg):
        return lo
    below = neg[k]  # must be strictly under the threshold
    above = neg[k - 1] if k > 0 else 1.0
    t = 0.5 * (below + above) if above > below else float(np.nextafter(below, np.inf))
    return float(np.clip(t, lo, hi))


def false_alarm_rate(y: np.ndarray, s: np.ndarray, thr: float) -> float:
    neg = np.asarray(s)[~np.asarray(y, bool)]
    return float((neg >= thr).mean()) if len(neg) else float("nan")
