"""benchmarks/fight_sources.py's cross-validation: grouped by source, so a feature that only names the
source learns nothing, and one that carries the label is found."""

import numpy as np

from benchmarks.fight_sources import grouped_cv


def clips(seed: int = 0):
    """30 clips of 10 sources, 3 windows each; every clip of a source has its source's label."""
    rng = np.random.default_rng(seed)
    label = np.array([(i // 3) % 2 for i in range(30)])
    source = np.array([f"s{i // 3}" for i in range(30)])
    clip = np.repeat(np.arange(30), 3)
    return rng, label, source, clip


def test_a_feature_that_carries_the_label_scores_near_one():
    rng, label, source, clip = clips()
    x = (label[clip] + 0.1 * rng.standard_normal(len(clip)))[:, None]
    ap, auc = grouped_cv(x, clip, label, source, seed=0)
    assert ap > 0.95 and auc > 0.95


def test_a_feature_that_only_names_the_source_learns_nothing_across_sources():
    """Each source's one-hot predicts the label perfectly within the data: a split by clip would score ~1
    by memorising the sources; folds by source leave the model nothing to go on."""
    rng, label, source, clip = clips(1)
    ids = np.unique(source, return_inverse=True)[1]
    x = np.eye(10)[ids[clip]] + 0.01 * rng.standard_normal((len(clip), 10))
    ap, auc = grouped_cv(x, clip, label, source, seed=0)
    assert auc < 0.75
