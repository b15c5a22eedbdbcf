from __future__ import annotations

import numpy as np

from engines.train.data import CLASSES, Clip, WindowSet, _split_sources


def test_split_by_source_keeps_sources_whole_and_labels_on_both_sides():
    rows = [{"source_id": f"s{i // 3}", "label": "fight" if i % 2 else "no_fight"} for i in range(90)]
    val = _split_sources(rows, seed=0)
    assert 0 < len(val) < 30
    n_val = sum(r["source_id"] in val for r in rows)
    assert 0.15 * 90 <= n_val <= 0.3 * 90
    assert _split_sources(rows, seed=0) == val  # seeded
    for side in (True, False):
        assert {r["label"] for r in rows if (r["source_id"] in val) == side} == {"fight", "no_fight"}


def test_targets_are_multilabel_with_all_zero_negatives():
    clips = [Clip("glass_break", "a.flac", "glass_break", "x", "train"),
             Clip("glass_break", "b.flac", "background", "y", "val"),
             Clip("urbansound8k", "c.opus", "siren", "z", "train")]
    n = 4
    ws = WindowSet("mixed", clips, np.array([0, 1, 2, 2], np.int32), np.zeros(n, np.float32),
                   np.zeros((n, 10), np.float32), np.zeros(n, np.float32), np.ones(n, np.float32),
                   -np.ones(n, np.int32), np.zeros((0, 1, 1, 1, 3), np.uint8))
    y = ws.targets()
    assert y.shape == (4, len(CLASSES))
    assert y[0, CLASSES.index("glass_break")] == 1 and y[0].sum() == 1
    assert y[1].sum() == 0
    assert y[2, CLASSES.index("siren")] == 1 and y[3, CLASSES.index("siren")] == 1
    assert ws.split_mask("val").tolist() == [False, True, False, False]
