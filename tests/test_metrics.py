"""Table-1 metrics against a naive per-(λ, target) loop that rebuilds the logits and calls np.argmax."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.analysis.table1 import _BLOCK, table1_metrics, table1_metrics_sets


def naive_table1(source, labels, coef, targets, target=None) -> pd.DataFrame:
    Y = source if target is None else target
    lab = labels >= 0
    rows = []
    for li in range(coef.shape[0]):
        for t, i in enumerate(targets):
            r = source @ coef[li, t]
            Z = Y.copy()
            Z[:, i] = r
            pred, opred = Z.argmax(1), Y.argmax(1)
            pos = labels == i
            abs_err = np.abs(Y[:, i] - r).mean()
            rows.append({
                "lambda_index": li, "target": int(i), "n_sources": int((coef[li, t] != 0).sum()),
                "abs_err": abs_err, "rel_err": abs_err / np.abs(Y[:, i]).mean(),
                "acc": (pred == labels)[lab].mean(), "orig_acc": (opred == labels)[lab].mean(),
                "pos_acc": (pred == labels)[pos].mean() if pos.any() else np.nan,
                "orig_pos_acc": (opred == labels)[pos].mean() if pos.any() else np.nan, "n_pos": int(pos.sum()),
            })
    return pd.DataFrame(rows)


def _planted(rng, N=600, n=12, L=3, density=0.3):
    """Logits where each target really is (nearly) a combination of a few others, plus unlabelled rows."""
    Z = rng.normal(size=(N, n))
    labels = Z.argmax(1)  # a model that is right on these samples …
    flip = rng.random(N) < 0.15
    labels[flip] = rng.integers(0, n, flip.sum())  # … except where the label disagrees
    labels[rng.random(N) < 0.1] = -1  # no class (OOD-like)
    coef = rng.normal(size=(L, n, n)) * (rng.random((L, n, n)) < density)
    for i in range(n):
        coef[:, i, i] = 0.0
    return Z, labels, coef


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_within_matches_naive(seed):
    rng = np.random.default_rng(seed)
    Z, labels, coef = _planted(rng)
    targets = np.arange(Z.shape[1])
    got = table1_metrics(Z, labels, coef, targets)
    want = naive_table1(Z, labels, coef, targets)
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False, rtol=1e-12, atol=1e-12)


def test_sets_in_one_pass_match_naive_on_float32_logits_over_several_blocks():
    """Two coefficient sets on one support (as lasso and refit), float32 logits (kept float32 by the
    kernel), more samples than one kernel block, and a between pair: each set equals the naive loop."""
    rng = np.random.default_rng(7)
    N = 2 * _BLOCK + 77
    Z, labels, coef = _planted(rng, N=N, n=10, L=2)
    Z = Z.astype(np.float32)
    other = np.where(coef != 0, rng.normal(size=coef.shape), 0.0)
    G = (Z @ rng.normal(size=(10, 6))).astype(np.float32)
    lab_g = np.where(labels >= 0, labels % 6, -1)
    targets = np.array([0, 3, 5])
    for tgt, lab in ((None, labels), (G, lab_g)):
        got = table1_metrics_sets(Z, lab, [coef[:, targets], other[:, targets]], targets, target_logits=tgt)
        for g, c in zip(got, (coef, other)):
            want = naive_table1(Z.astype(np.float64), lab, c[:, targets], targets,
                                None if tgt is None else tgt.astype(np.float64))
            pd.testing.assert_frame_equal(g.reset_index(drop=True), want, check_dtype=False, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="sparsity pattern"):
        table1_metrics_sets(Z, labels, [coef, coef * (rng.random(coef.shape) < 0.5)], np.arange(10))


def test_exact_reconstruction_keeps_accuracy_and_subset_of_targets():
    rng = np.random.default_rng(3)
    N, n = 500, 8
    Z = rng.normal(size=(N, n))
    Z[:, 5] = 0.7 * Z[:, 1] - 1.3 * Z[:, 2]  # class 5 is exactly a combination of 1 and 2
    labels = Z.argmax(1)
    coef = np.zeros((2, 2, n))
    coef[0, 0, [1, 2]] = [0.7, -1.3]  # exact
    coef[1, 0, [1]] = [0.7]  # dropped a source
    coef[:, 1, 0] = 1.0  # target 3 from class 0: a rough guess
    targets = np.array([5, 3])
    got = table1_metrics(Z, labels, coef, targets)
    exact = got[(got.lambda_index == 0) & (got.target == 5)].iloc[0]
    assert exact.abs_err < 1e-12 and exact.rel_err < 1e-12
    assert exact.acc == exact.orig_acc == 1.0 and exact.pos_acc == exact.orig_pos_acc == 1.0
    assert exact.n_sources == 2 and exact.n_pos == (labels == 5).sum()
    rough = got[(got.lambda_index == 1) & (got.target == 5)].iloc[0]
    assert rough.rel_err > 0.1 and rough.n_sources == 1
    pd.testing.assert_frame_equal(got, naive_table1(Z, labels, coef, targets), check_dtype=False, rtol=1e-12)


def test_between_replaces_the_target_models_logit():
    rng = np.random.default_rng(4)
    N, n, m = 400, 9, 7
    F = rng.normal(size=(N, n))
    G = F[:, :m] @ rng.normal(size=(m, m)) * 0.5 + rng.normal(size=(N, m))
    labels = G.argmax(1)
    labels[:50] = -1
    coef = rng.normal(size=(2, 4, n)) * (rng.random((2, 4, n)) < 0.5)
    targets = np.array([0, 2, 5, 6])
    for t, i in enumerate(targets):
        coef[:, t, i] = 0.0  # f's class i is not a source of g's class i
    got = table1_metrics(F, labels, coef, targets, target_logits=G)
    want = naive_table1(F, labels, coef, targets, target=G)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12, atol=1e-12)
    assert (got.orig_acc == 1.0).all()  # the labels are g's own predictions on the labelled rows


def test_ties_follow_argmax_first_index():
    # integer logits make ties common; the reconstruction ties with the best other logit on purpose
    rng = np.random.default_rng(5)
    N, n = 300, 6
    Z = rng.integers(0, 4, size=(N, n)).astype(float)
    labels = rng.integers(-1, n, size=N)
    coef = np.zeros((3, n, n))
    for i in range(n):
        j = (i + 1) % n
        coef[0, i, j] = 1.0  # r = another column: ties galore
        coef[1, i, j] = 0.5
        coef[2, i, (i + 2) % n] = 2.0
    targets = np.arange(n)
    pd.testing.assert_frame_equal(table1_metrics(Z, labels, coef, targets),
                                  naive_table1(Z, labels, coef, targets), check_dtype=False, rtol=1e-12)


def test_float32_logits_no_positive_samples_and_single_class():
    rng = np.random.default_rng(6)
    Z = rng.normal(size=(200, 5)).astype(np.float32)
    labels = np.where(rng.random(200) < 0.5, 0, -1)  # only class 0 ever labelled
    coef = rng.normal(size=(1, 5, 5))
    for i in range(5):
        coef[0, i, i] = 0
    got = table1_metrics(Z, labels, coef, np.arange(5))
    want = naive_table1(Z.astype(np.float64), labels, coef, np.arange(5))
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12, atol=1e-12)
    assert got.loc[got.target == 3, "pos_acc"].isna().all() and (got.n_pos[got.target != 0] == 0).all()
    one = table1_metrics(np.ones((4, 1)), np.array([0, 0, -1, 0]), np.zeros((1, 1, 1)), np.array([0]))
    assert one.acc.iloc[0] == 1.0 and one.rel_err.iloc[0] == 1.0


def test_bad_shapes_are_rejected():
    Z = np.zeros((10, 4))
    with pytest.raises(ValueError, match="coef"):
        table1_metrics(Z, np.zeros(10, int), np.zeros((1, 2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        table1_metrics(Z, np.zeros(9, int), np.zeros((1, 2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        table1_metrics(Z, np.zeros(10, int), np.zeros((1, 1, 4)), np.array([4]))
    bad = Z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        table1_metrics(bad, np.zeros(10, int), np.zeros((1, 1, 4)), np.array([0]))


def test_large_sparse_path_is_vectorised():
    """n = 300 classes, N = 6000, 3 λ: well under a second per λ (the n=1000, N=20000 case scales
    linearly in N and in the number of nonzero coefficients). A guard against O(N·n²) regressions,
    with a generous bound; correctness is checked on a sample of targets."""
    import time

    rng = np.random.default_rng(7)
    N, n, L = 6000, 300, 3
    Z = rng.normal(size=(N, n)).astype(np.float32)
    labels = rng.integers(-1, n, size=N)
    coef = np.zeros((L, n, n))
    for li, k in enumerate([20, 8, 3]):
        for i in range(n):
            j = rng.choice(np.delete(np.arange(n), i), size=k, replace=False)
            coef[li, i, j] = rng.normal(size=k)
    t0 = time.perf_counter()
    got = table1_metrics(Z, labels, coef, np.arange(n))
    assert time.perf_counter() - t0 < 10.0
    pick = np.array([0, 17, 150, 299])
    want = naive_table1(Z.astype(np.float64), labels, coef[:, pick], pick)
    sub = got[got.target.isin(pick)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sub, want, check_dtype=False, rtol=1e-10, atol=1e-12)
