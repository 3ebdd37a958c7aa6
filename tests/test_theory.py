"""§2.2/§2.3 diagnostics against determinants, sample least squares, explicit matrix square roots and
cvxpy (CLARABEL, tight tolerances, support-polished) reference solutions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from neudep_assets.lib.analysis import theory


# ------------------------------------------------------------------------------------------------
# reference solutions


@dataclass
class RefPath:
    coef: np.ndarray
    lambda_abs: np.ndarray
    lambda_max: np.ndarray
    targets: np.ndarray
    kkt: np.ndarray


def _solve_ref(Ch: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """min tᵀĈt − 2bᵀt + λ‖t‖₁ by CLARABEL, then made exact on its support: the KKT system
    Ĉ_SS t_S = b_S − (λ/2) sign(t_S) is re-solved and accepted only if it is a certified optimum."""
    import cvxpy as cp

    w, Q = np.linalg.eigh(Ch)
    G = (Q * np.sqrt(np.maximum(w, 0.0))).T
    t = cp.Variable(b.shape[0])
    cp.Problem(cp.Minimize(cp.sum_squares(G @ t) - 2 * b @ t + lam * cp.norm1(t))).solve(
        solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=500)
    x = np.asarray(t.value, dtype=np.float64)
    S = np.abs(x) > 1e-6 * max(np.abs(x).max(), 1e-300)
    sg = np.sign(x[S])
    xs = np.linalg.lstsq(Ch[np.ix_(S, S)], b[S] - lam / 2 * sg, rcond=None)[0]
    x2 = np.zeros_like(x)
    x2[S] = xs
    g = Ch @ x2 - b
    if np.all(np.sign(xs) == sg) and np.all(np.abs(g[~S]) <= lam / 2 * (1 + 1e-9)):
        return x2
    return x


def _kkt(Ch, b, lam, t):
    g = Ch @ t - b
    v = np.where(t != 0, np.abs(g + lam / 2 * np.sign(t)), np.maximum(np.abs(g) - lam / 2, 0.0))
    return float(v.max() / max(2 * np.abs(b).max(), 1e-300))


def ref_path(C, rel, cross=None, targets=None) -> RefPath:
    n = C.shape[0]
    M = C if cross is None else cross
    targets = np.arange(M.shape[1]) if targets is None else np.asarray(targets)
    L, T = len(rel), len(targets)
    coef, lam_abs, kkt = np.zeros((L, T, n)), np.zeros((L, T)), np.zeros((L, T))
    lam_max = np.zeros(T)
    for ti, i in enumerate(targets):
        keep = np.array([j for j in range(n) if j != i])
        Ch, b = C[np.ix_(keep, keep)], M[keep, i]
        lam_max[ti] = 2 * np.abs(b).max()
        for li, r in enumerate(rel):
            lam = r * lam_max[ti]
            t = _solve_ref(Ch, b, lam) if r < 1 else np.zeros(keep.size)
            coef[li, ti, keep], lam_abs[li, ti], kkt[li, ti] = t, lam, _kkt(Ch, b, lam, t)
    assert kkt.max() < 1e-9, "reference solver did not certify"
    return RefPath(coef, lam_abs, lam_max, targets, kkt)


RELS = [0.02, 0.1, 0.3, 0.6, 0.9, 0.999]


def gram(F):
    return F.T @ F / F.shape[0]


def lstsq_residual(F, y, exclude=None):
    """Mean squared residual of y regressed (no intercept) on the columns of F except `exclude`
    (LAPACK's SVD-based least squares on the samples: independent of the moments)."""
    X = F if exclude is None else np.delete(F, exclude, axis=1)
    with _one_blas_thread():  # tall-skinny LAPACK calls crawl when OpenBLAS threads spin on a busy machine
        t = np.linalg.lstsq(X, y, rcond=None)[0]
    return float(np.mean((y - X @ t) ** 2))


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, user_api="blas")
    except ImportError:
        import contextlib

        return contextlib.nullcontext()


def low_rank_logits(rng, N, n, d, bias=True):
    """Logits of a linear head on d ReLU features: rank ≤ d + 1."""
    h = np.maximum(rng.normal(size=(N, d)), 0.0)
    return h @ rng.normal(size=(d, n)) / np.sqrt(d) + (rng.normal(size=n) if bias else 0.0)


# ------------------------------------------------------------------------------------------------
# rank and redundancy (§2.2)


def test_numerical_rank_of_planted_ranks():
    rng = np.random.default_rng(0)
    for d in (1, 3, 7, 20):
        F = rng.normal(size=(200, d)) @ rng.normal(size=(d, 20))
        assert theory.numerical_rank(gram(F)) == min(d, 20)
    assert theory.numerical_rank(np.zeros((4, 4))) == 0
    C = np.diag([1.0, 1e-3, 1e-9])
    assert theory.numerical_rank(C) == 3 and theory.numerical_rank(C, rtol=1e-6) == 2


def test_redundancy_matches_determinants_when_well_conditioned():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 9)) + 0.5 * rng.normal(size=(500, 9)) + 1.0
    C = gram(F)
    red = theory.redundancy(C)
    n = C.shape[0]
    det = np.array([np.linalg.det(C) / np.linalg.det(np.delete(np.delete(C, i, 0), i, 1)) for i in range(n)])
    np.testing.assert_allclose(red.err0, det, rtol=1e-10)
    # the paper's "geometry" form (Σ_j α_j² / σ_j²)⁻¹ and the residual form C_ii − bᵀĈ⁻¹b
    w, Q = np.linalg.eigh(C)
    np.testing.assert_allclose(red.err0, 1 / (Q ** 2 / w).sum(1), rtol=1e-10)
    for i in range(n):
        keep = np.delete(np.arange(n), i)
        b = C[keep, i]
        assert red.err0[i] == pytest.approx(C[i, i] - b @ np.linalg.solve(C[np.ix_(keep, keep)], b), rel=1e-10)
        assert red.err0[i] == pytest.approx(lstsq_residual(F, F[:, i], exclude=i), rel=1e-9)
    np.testing.assert_allclose(red.rel_err0, red.err0 / np.diag(C), rtol=1e-14)
    assert (red["rank"] == n).all() and (red.eig_floor == 0).all() and red.consistent.all()


def test_redundancy_of_planted_exact_dependencies():
    """Classes 5 = 0.7·f0 − 1.3·f1 and 6 = f2 + f3 + f4 are exact combinations; 7 is independent."""
    rng = np.random.default_rng(2)
    N = 2000
    F = rng.normal(size=(N, 8)) + 0.3
    F[:, 5] = 0.7 * F[:, 0] - 1.3 * F[:, 1]
    F[:, 6] = F[:, 2] + F[:, 3] + F[:, 4]
    C = gram(F)
    red = theory.redundancy(C)
    assert red["rank"].iloc[0] == 6 == theory.numerical_rank(C)
    in_dep = [0, 1, 2, 3, 4, 5, 6]
    assert (red.rel_err0[in_dep] < 1e-10).all()
    assert (red.null_leverage[in_dep] > 1e-3).all() and red.null_leverage[7] < 1e-20
    # the independent class: its residual on the others, as least squares on the samples says
    assert red.err0[7] == pytest.approx(lstsq_residual(F, F[:, 7], exclude=7), rel=1e-8)
    assert red.rel_err0[7] > 0.5


def test_redundancy_where_determinants_fail():
    """The paper's Remark 2: with many classes and a low-rank C, det C / det C₋ᵢ is 0/0 (NaN) or
    noise; the stable form still agrees with least squares on the samples."""
    rng = np.random.default_rng(3)
    N, n, d = 1500, 80, 20
    F = low_rank_logits(rng, N, n, d)
    F[:, :3] += 1e-2 * rng.normal(size=(N, 3))  # three classes with a little unique signal
    C = gram(F)
    with np.errstate(all="ignore"):
        quotient = np.array([np.linalg.det(C) / np.linalg.det(np.delete(np.delete(C, i, 0), i, 1)) for i in range(5)])
    assert not np.all(np.isfinite(quotient) & (quotient > 0))  # NaN, 0, or negative noise
    red = theory.redundancy(C)
    assert red["rank"].iloc[0] == d + 1 + 3
    for i in range(5):
        want = lstsq_residual(F, F[:, i], exclude=i)
        assert red.err0[i] == pytest.approx(want, rel=1e-5, abs=1e-10 * C[i, i])
    assert red.rel_err0[:3].min() > 1e-6  # the unique signal is seen …
    assert red.rel_err0[3:].max() < 1e-9  # … and the rest are exact combinations of the others


def test_redundancy_between_models():
    rng = np.random.default_rng(4)
    N, n, d = 1500, 8, 5
    h = rng.normal(size=(N, d))
    for F in (h @ rng.normal(size=(d, n)),  # rank-deficient source (d < n)
              h @ rng.normal(size=(d, n)) + 0.3 * rng.normal(size=(N, n))):  # full rank
        G = h @ rng.normal(size=(d, n)) + 0.5 * rng.normal(size=(N, n))
        C, X, s = gram(F), F.T @ G / N, (G ** 2).mean(0)
        red = theory.redundancy(C, cross=X, target_second_moment=s)
        want = [lstsq_residual(F, G[:, i], exclude=i) for i in range(n)]
        np.testing.assert_allclose(red.err0, want, rtol=1e-9, atol=1e-12 * s.max())
        np.testing.assert_allclose(red.explained, s - np.asarray(want), rtol=1e-9)
        assert red.consistent.all()
        no_s = theory.redundancy(C, cross=X)
        assert no_s.err0.isna().all() and np.allclose(no_s.explained, red.explained)


def test_redundancy_flags_inconsistent_moments():
    rng = np.random.default_rng(5)
    F = low_rank_logits(rng, 500, 6, 3)
    C = gram(F)
    X = F.T @ F / 500
    w, Q = np.linalg.eigh(C)
    X[:, 2] += 0.5 * Q[:, 0]  # a cross moment no sample set can produce (outside the range of C)
    red = theory.redundancy(C, cross=X, target_second_moment=np.diag(C))
    assert not red.consistent[2] and red.err0[2] < 0
    with pytest.raises(ValueError, match="square"):
        theory.redundancy(np.zeros((3, 4)))


# ------------------------------------------------------------------------------------------------
# Eq. 5


@pytest.fixture(scope="module")
def within_case():
    rng = np.random.default_rng(6)
    F = low_rank_logits(rng, 800, 8, 5)
    F[:, 0] = rng.normal(size=800) + 2.0  # one class outside the others' span
    C = gram(F)
    return C, ref_path(C, RELS)


@pytest.fixture(scope="module")
def between_case():
    rng = np.random.default_rng(7)
    N, n, d = 800, 7, 4
    h = rng.normal(size=(N, d))
    F = h @ rng.normal(size=(d, n))
    G = h @ rng.normal(size=(d, n)) + 0.4 * rng.normal(size=(N, n))
    C, X, s = gram(F), F.T @ G / N, (G ** 2).mean(0)
    return C, X, s, ref_path(C, RELS, cross=X)


def test_eq5_holds_on_exact_paths(within_case, between_case):
    C, P = within_case
    red = theory.redundancy(C)
    for err0 in (None, red, red.err0.to_numpy()):
        e5 = theory.eq5_violations(C, P, err0=err0)
        assert (e5.n_violations == 0).all() and (e5.max_violation == 0).all()
    err = theory.path_errors(C, P)
    assert (np.diff(err, axis=0) >= -1e-9 * np.diag(C)).all()  # RELS are increasing
    Cb, X, s, Pb = between_case
    e5 = theory.eq5_violations(Cb, Pb, cross=X, target_second_moment=s)
    assert (e5.n_violations == 0).all()
    assert (e5.err_max_lambda <= s + 1e-12).all()


def test_eq5_counts_each_kind_of_violation(within_case):
    C, P = within_case
    n = C.shape[0]
    bad = RefPath(P.coef.copy(), P.lambda_abs, P.lambda_max, P.targets, P.kkt)
    bad.coef[0, 1] *= 0.5  # target 1 at the smallest λ: worse than at the next λ → monotonicity
    bad.coef[-1, 2, 3] = 50.0  # target 2 at the largest λ: far above C_ii → upper bound
    e5 = theory.eq5_violations(C, bad)
    assert e5.loc[1, "n_monotone_violations"] == 1 and e5.loc[1, "n_violations"] == 1
    assert e5.loc[2, "n_upper_violations"] == 1 and e5.loc[2, "max_violation"] > 1
    assert (e5.loc[[0, 3, 4, 5, 6, 7], "n_violations"] == 0).all()
    # an err0 above what the path reaches: every λ of the path is "below the lower bound"
    err0 = theory.redundancy(C).err0.to_numpy().copy()
    err0[4] = C[4, 4] * 0.999
    e5 = theory.eq5_violations(C, P, err0=err0)
    assert e5.loc[4, "n_lower_violations"] >= 1
    # λ order in the path does not matter
    perm = np.array([3, 0, 5, 1, 4, 2])
    shuffled = RefPath(P.coef[perm], P.lambda_abs[perm], P.lambda_max, P.targets, P.kkt[perm])
    assert (theory.eq5_violations(C, shuffled).n_violations == 0).all()
    assert theory.eq5_violations(C, P).shape[0] == n


# ------------------------------------------------------------------------------------------------
# Theorem 3 and Conjecture 1 (§2.3)


def explicit_thm3_threshold(C, i, lam, cross=None):
    """Eq. 13 as written: A = Ĉ^{1/2} by eigendecomposition, A⁻ᵀb̂ by the pseudo-inverse."""
    n = C.shape[0]
    keep = np.delete(np.arange(n), i)
    Ch = C[np.ix_(keep, keep)]
    b = (C if cross is None else cross)[keep, i]
    w, Q = np.linalg.eigh(Ch)
    A = (Q * np.sqrt(np.maximum(w, 0))) @ Q.T
    y = np.linalg.pinv(A.T, rcond=1e-7, hermitian=True) @ b
    bmax = np.abs(b).max()
    thr = 1 - 2 * np.linalg.norm(A, axis=1) * np.linalg.norm(y) * abs(1 / lam - 1 / (2 * bmax))
    return keep, np.abs(b) / bmax, thr


def test_thm3_matches_explicit_square_root(within_case, between_case):
    C, P = within_case
    for t in (0, 3, 6):
        for li in (2, 4):
            keep, ratio, thr = explicit_thm3_threshold(C, P.targets[t], P.lambda_abs[li, t])
            df = theory.fig3_data(C, P, t, li)
            np.testing.assert_array_equal(df.source, keep)
            np.testing.assert_allclose(df.corr_ratio, ratio, rtol=1e-12)
            np.testing.assert_allclose(df.thm3_threshold, thr, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(df.lambda_ratio, RELS[li], rtol=1e-12)
            np.testing.assert_array_equal(df.coef, P.coef[li, t, keep])
    Cb, X, s, Pb = between_case
    keep, ratio, thr = explicit_thm3_threshold(Cb, 2, Pb.lambda_abs[3, 2], cross=X)
    df = theory.fig3_data(Cb, Pb, 2, 3, cross=X)
    np.testing.assert_allclose(df.thm3_threshold, thr, rtol=1e-6, atol=1e-6)


def test_screening_counts_and_thm3_is_safe(within_case, between_case):
    """Theorem 3 is the dual-polytope-projection rule: with exact solutions it never fires wrongly,
    within or between, rank-deficient or not. Conjecture 1 screens more and is not safe."""
    C, P = within_case
    sc = theory.screening(C, P)
    n = C.shape[0]
    assert len(sc) == len(RELS) * n and (sc.n_candidates == n - 1).all()
    assert sc.thm3_violations.sum() == 0 and sc.thm3_applicable.all()
    assert sc.thm3_screened.sum() > 0  # it does screen near λ_max
    assert (sc.thm3_screened <= sc.n_candidates).all() and (sc.conj1_screened <= sc.n_candidates).all()
    # recount from fig3_data, one (λ, target) at a time
    for t in range(n):
        for li in range(len(RELS)):
            df = theory.fig3_data(C, P, t, li)
            row = sc[(sc.lambda_index == li) & (sc.target == P.targets[t])].iloc[0]
            nz = df.coef != 0
            assert row.n_nonzero == nz.sum()
            assert row.thm3_screened == df.thm3_screened.sum() and row.conj1_screened == df.conj1_screened.sum()
            assert row.conj1_violations == (df.conj1_screened & nz).sum()
            assert row.conj1_screened == (df.corr_ratio < RELS[li]).sum()
    Cb, X, s, Pb = between_case
    for kw in ({}, {"target_second_moment": s}, {"target_second_moment": s, "thm3_norm": "second_moment"}):
        scb = theory.screening(Cb, Pb, cross=X, **kw)
        assert scb.thm3_violations.sum() == 0 and scb.thm3_applicable.all()
    loose = theory.screening(Cb, Pb, cross=X, target_second_moment=s, thm3_norm="second_moment")
    assert (loose.thm3_screened <= scb.thm3_screened).all()


def test_thm3_safe_on_random_rank_deficient_problems():
    found = 0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        n, d = int(rng.integers(6, 10)), int(rng.integers(2, 8))
        C = gram(low_rank_logits(rng, 400, n, d, bias=bool(seed % 2)))
        P = ref_path(C, [0.05, 0.4, 0.8, 0.95])
        sc = theory.screening(C, P)
        assert sc.thm3_violations.sum() == 0
        found += sc.thm3_screened.sum()
    assert found > 0


def test_conjecture1_counterexample_suppressor():
    """f_target = f_1 − f_2 with f_1 = z + u, f_2 = u and z ⟂ u: E[f_target f_2] = 0, so
    Conjecture 1 declares class 2 independent at every λ > 0, yet the solution needs it
    (θ_2 → −1 as λ → 0). Theorem 3 leaves it alone."""
    rng = np.random.default_rng(8)
    N = 4000
    z, u, v = rng.normal(size=(3, N))
    u -= z * (z @ u) / (z @ z)  # exactly orthogonal in the sample
    F = np.stack([z, z + u, u, v + 0.1 * z], axis=1)
    C = gram(F)
    assert abs(C[0, 2]) < 1e-12
    P = ref_path(C, [0.02, 0.1, 0.2], targets=[0])
    assert (P.coef[:, 0, 2] < -0.2).all()
    sc = theory.screening(C, P)
    assert (sc.conj1_violations >= 1).all() and sc.conj1_max_violating_coef.min() > 0.2
    assert sc.thm3_violations.sum() == 0


def test_thm3_violation_is_counted_for_an_inexact_solution(within_case):
    """The counter can fire: give a source that Theorem 3 screens a small nonzero coefficient (what an
    inexact solver could return) and it is reported, unless below coef_tol."""
    C, P = within_case
    sc = theory.screening(C, P)
    li, t = [(int(r.lambda_index), int(np.nonzero(P.targets == r.target)[0][0]))
             for r in sc.itertuples() if r.thm3_screened > 0][0]
    df = theory.fig3_data(C, P, t, li)
    j = int(df.source[df.thm3_screened].iloc[0])
    bad = RefPath(P.coef.copy(), P.lambda_abs, P.lambda_max, P.targets, P.kkt)
    bad.coef[li, t, j] = 1e-6
    sc2 = theory.screening(C, bad)
    row = sc2[(sc2.lambda_index == li) & (sc2.target == P.targets[t])].iloc[0]
    assert row.thm3_violations == 1 and row.thm3_max_violating_coef == 1e-6
    row = theory.screening(C, bad, coef_tol=1e-5)
    assert row.thm3_violations.sum() == 0


def test_thm3_not_applicable_when_b_outside_range():
    rng = np.random.default_rng(9)
    F = low_rank_logits(rng, 500, 6, 3)
    C = gram(F)
    X = C.copy()
    w, Q = np.linalg.eigh(C)
    X[:, 2] += 0.5 * Q[:, 0]  # outside the range of Ĉ: the CovLasso is unbounded below for small λ
    path = RefPath(np.zeros((1, 6, 6)), np.full((1, 6), 1e-3), np.ones(6), np.arange(6), np.zeros((1, 6)))
    sc = theory.screening(C, path, cross=X, target_second_moment=np.diag(C))
    assert not sc.thm3_applicable[2] and sc.thm3_screened[2] == 0
    assert sc.thm3_applicable.drop(index=2).all()
    # a C that is not a second-moment matrix at all (negative eigenvalue)
    Cneg = C - 0.1 * np.outer(Q[:, 0], Q[:, 0])
    assert not theory.screening(Cneg, path).thm3_applicable.any()


def test_with_solver_if_present():
    """The project's solver on a larger rank-deficient problem: Eq. 5 and Theorem 3 hold."""
    covlasso = pytest.importorskip("neudep_assets.lib.covlasso")
    rng = np.random.default_rng(10)
    F = low_rank_logits(rng, 3000, 60, 12).astype(np.float32).astype(np.float64)
    C = gram(F)
    P = covlasso.solve_path(C, [0.02, 0.1, 0.3, 0.7, 0.95])
    red = theory.redundancy(C)
    assert red["rank"].iloc[0] == 13 and red.rel_err0.max() < 1e-8
    e5 = theory.eq5_violations(C, P, err0=red.err0.to_numpy())
    assert e5.n_violations.sum() == 0
    sc = theory.screening(C, P)
    assert sc.thm3_violations.sum() == 0 and sc.thm3_screened.sum() > 0


def test_edge_cases_and_input_errors(between_case):
    Cb, X, s, Pb = between_case
    with pytest.raises(ValueError, match="target_second_moment"):
        theory.eq5_violations(Cb, Pb, cross=X)
    with pytest.raises(ValueError, match="second_moment"):
        theory.screening(Cb, Pb, cross=X, thm3_norm="second_moment")
    with pytest.raises(ValueError, match="thm3_norm"):
        theory.screening(Cb, Pb, cross=X, thm3_norm="sqrt")
    with pytest.raises(ValueError, match="cross"):
        theory.redundancy(Cb, cross=X[:3])
    with pytest.raises(ValueError, match="coef"):
        theory.screening(Cb, RefPath(Pb.coef[:, :, :3], Pb.lambda_abs, Pb.lambda_max, Pb.targets, Pb.kkt))
    # C = 0: nothing to explain, nothing to screen wrongly
    Z = np.zeros((3, 3))
    red = theory.redundancy(Z)
    assert (red.err0 == 0).all() and red.rel_err0.isna().all() and (red["rank"] == 0).all()
    zp = RefPath(np.zeros((1, 3, 3)), np.ones((1, 3)), np.zeros(3), np.arange(3), np.zeros((1, 3)))
    sc = theory.screening(Z, zp)
    assert (sc.thm3_screened == 2).all() and (sc.thm3_violations == 0).all()
    assert (theory.eq5_violations(Z, zp).n_violations == 0).all()


def test_redundancy_has_the_same_bits_whatever_the_blas_thread_count():
    """The default graph on Dask (one BLAS thread per worker) and in the CLI (two) stored err0 differing in
    the 15th digit for 796 of 10,000 rows: the redundancy runs on one BLAS thread."""
    import hashlib

    from threadpoolctl import threadpool_limits

    from neudep_assets.lib.analysis.moments import second_moment

    rng = np.random.default_rng(0)
    F = (rng.normal(size=(20000, 257)) @ rng.normal(size=(257, 1000))).astype(np.float32)
    G = (0.1 * F @ rng.normal(size=(1000, 1000)) + rng.normal(size=F.shape)).astype(np.float32)
    C, cross, tsm = second_moment(F), second_moment(F, G), (G.astype(np.float64) ** 2).mean(0)
    seen = set()
    for t in (1, 2):
        with threadpool_limits(t, user_api="blas"):
            within, between = theory.redundancy(C), theory.redundancy(C, cross=cross, target_second_moment=tsm)
        seen.add(hashlib.sha256(within["err0"].to_numpy().tobytes() + between["err0"].to_numpy().tobytes()).hexdigest())
    assert len(seen) == 1
