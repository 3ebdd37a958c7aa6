"""The low-rank eigendecomposition (pivoted Cholesky + QR + a small eigh) against LAPACK's dense eigh:
the same split at the floor, the same derived quantities, the same analysis row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.analysis import analyse, second_moment, spectral as spectral_mod, theory
from neudep_assets.lib.analysis.spectral import spectral


def _low_rank_moments(seed=0, N=3000, n=400, d=30, m=50):
    """Within moments of a rank-(d+1) head, and between moments against a second head on the same features."""
    rng = np.random.default_rng(seed)
    H = np.maximum(rng.normal(size=(N, d)), 0.0) * rng.uniform(0.2, 3.0, d)
    F = H @ rng.normal(size=(d, n)) / np.sqrt(d) + rng.normal(size=n)
    G = H @ rng.normal(size=(d, m)) / np.sqrt(d) + 0.2 * rng.normal(size=(N, m))
    return second_moment(F), F, F.T @ G / N, (G ** 2).mean(0), G


@pytest.fixture(scope="module")
def moments():
    return _low_rank_moments()


def test_lowrank_split_equals_the_dense_one(moments):
    C, _, X, _, _ = moments
    a, b = spectral(C, None, "dense"), spectral(C, None, "lowrank")
    assert (a.method, b.method, b.Q0) == ("dense", "lowrank", None)
    assert a.rank == b.rank == 31  # d features + the bias
    np.testing.assert_allclose(b.wr, a.wr, rtol=1e-10, atol=1e-12 * a.wr.max())
    assert b.tau == pytest.approx(a.tau, rel=1e-10)
    np.testing.assert_allclose(b.null_leverage, a.null_leverage, atol=1e-10)
    np.testing.assert_allclose(b.h_diag(), a.h_diag(), rtol=1e-8)
    # the range part of C_τ⁻¹X agrees to rounding; the null part of X (in the range of C) is noise of
    # size eps·‖X‖/τ in both, and the twice-projected low-rank one is no larger than LAPACK's
    (ra, na), (rb, nb) = a.h_apply(X), b.h_apply(X)
    np.testing.assert_allclose(rb, ra, rtol=1e-8, atol=1e-8 * np.abs(ra).max())
    assert np.abs(nb).max() <= 10 * max(np.abs(na).max(), np.finfo(float).eps * np.abs(X).max() / a.tau)
    # the remainder is measured: the slack covers τ and ‖C − LLᵀ‖, and C is found PSD to rounding
    assert a.tau <= b.slack <= a.tau + 1e-10 * a.wr.max()
    assert -1e-10 * a.wr.max() < b.min_eig <= 0.0


def test_redundancy_and_eq5_agree_within_and_between(moments):
    C, _, X, s, _ = moments
    a, b = spectral(C, None, "dense"), spectral(C, None, "lowrank")
    for kw in ({}, {"cross": X, "target_second_moment": s}):
        ra, rb = (theory.redundancy(C, spectral=sp, **kw) for sp in (a, b))
        np.testing.assert_allclose(rb.rel_err0, ra.rel_err0, rtol=1e-6, atol=1e-12)
        np.testing.assert_array_equal(rb["rank"], ra["rank"])
        np.testing.assert_allclose(rb.null_leverage, ra.null_leverage, atol=1e-10)
    assert (ra.rel_err0.to_numpy() > 0.005).all()  # noise in G: the between residuals are real, not rounding


def test_not_psd_is_seen_through_the_remainder():
    C = _low_rank_moments(n=300)[0]
    v = np.zeros(C.shape[0])
    v[[3, 70]] = 1.0 / np.sqrt(2)
    bad = C - 1e-3 * np.trace(C) / C.shape[0] * np.outer(v, v)
    a, b = spectral(bad, None, "dense"), spectral(bad, None, "lowrank")
    assert a.min_eig < -a.tau and b.min_eig < -b.tau
    assert b.min_eig <= a.min_eig * (1 - 1e-3)  # the remainder's smallest eigenvalue (an estimate) is below C's


def test_auto_picks_by_size_and_rank(moments, monkeypatch):
    C = moments[0]
    assert spectral(C, None).method == "dense"  # n = 400: below the size where low rank is tried
    monkeypatch.setattr(spectral_mod, "LOWRANK_MIN_N", 100)
    assert spectral(C, None).method == "lowrank"
    full = C + np.eye(C.shape[0]) * np.trace(C) / C.shape[0]
    assert spectral(full, None).method == "dense"  # full rank: the factorisation gives up at n/8
    with pytest.raises(ValueError, match="rank above n/8.*'dense'"):
        spectral(full, None, "lowrank")
    with pytest.raises(ValueError, match="spectral method must be one of"):
        spectral(C, None, "svd")
    # PSD-ness that Lanczos cannot check: the dense answer instead
    monkeypatch.setattr(spectral_mod, "_remainder_min", lambda C, L: None)
    assert spectral(C, None).method == "dense"


def test_analysis_rows_are_the_same_with_the_lowrank_split(moments, monkeypatch):
    C, F, _, _, _ = moments
    rng = np.random.default_rng(5)
    E = F[rng.choice(F.shape[0], 500, replace=False)]
    kw = dict(eval_source=E, eval_labels=E.argmax(1))
    dense = analyse(C, [0.5, 0.1], **kw)
    monkeypatch.setattr(spectral_mod, "LOWRANK_MIN_N", 100)
    low = analyse(C, [0.5, 0.1], **kw)
    assert (dense.spectral.method, low.spectral.method) == ("dense", "lowrank")
    pd.testing.assert_frame_equal(low.per_target, dense.per_target, rtol=1e-9)
    pd.testing.assert_frame_equal(low.per_class, dense.per_class, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_lowrank_slack_bounds_the_true_remainder(seed):
    """The slack is a bound, not an estimate: δ − τ ≥ ‖C − LLᵀ‖₂ (dense eigvalsh of the true remainder) on random
    low-rank moments, nearly low-rank ones (a small full-rank part the factorisation drops) and float32 logits."""
    rng = np.random.default_rng(seed)
    N, n, d = 2000, 240, int(rng.integers(5, 25))
    H = np.maximum(rng.normal(size=(N, d)), 0.0)
    F = H @ rng.normal(size=(d, n)) + rng.normal(size=n)
    F = F + [0.0, 1e-7, 1e-6][seed % 3] * rng.normal(size=(N, n))
    C = second_moment(F.astype(np.float32) if seed >= 3 else F)
    rtol = 1e-9 if seed % 3 else n * np.finfo(float).eps  # noise below the floor: dropped into the remainder
    sp = spectral(C, rtol, "lowrank")
    L = spectral_mod._pivoted_cholesky(C, rtol * C.diagonal().max(), n // 8)  # the factor spectral() used
    true = float(np.abs(np.linalg.eigvalsh(C - L @ L.T)).max())
    assert sp.slack - sp.tau >= true
    assert sp.slack - sp.tau <= n * 1e-6 * C.diagonal().max()  # and not a vacuous one

