"""The exact path kept (issue 12): knots from the homotopy, read back without solving, against direct solves,
scikit-learn's lasso path, chunked runs, and the store's SQL."""

import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.covlasso import solve_path, target_rhs
from neudep_assets.lib.covlasso.path import (dependency_at, knot_frames, last_with_at_most, sparsest_on_grid,
                                             sparsest_within)


def _problem(n=14, d=8, N=400, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, n))
    H = np.abs(rng.normal(size=(N, d)))
    F = H @ W + 0.05 * rng.normal(size=(N, n))
    return F.T @ F / N, F


def _frames(C, cross=None, s=None, lams=(0.5, 0.1, 0.03), **kw):
    p = solve_path(C, lams, cross=cross, knots=True, **kw)
    M = C if cross is None else cross
    s = np.diag(C) if s is None else s
    return p, *knot_frames(p.knots, p.targets, p.lambda_max, M, s)


def _dense(df, n, targets):
    out = np.zeros((len(targets), n))
    for t, j, v in zip(df["target_class"], df["source_class"], df["coef"]):
        if not pd.isna(j):
            out[list(targets).index(t), int(j)] = v
    return out


@pytest.mark.parametrize("between", [False, True])
def test_dependency_at_any_lambda_equals_a_direct_solve(between):
    C, F = _problem()
    cross = s = None
    if between:
        G = F @ np.random.default_rng(3).normal(size=(14, 14)) * 0.3 + F
        cross, s = F.T @ G / F.shape[0], (G ** 2).mean(0)
    p, kf, cf = _frames(C, cross, s)
    assert p.knots.exact.all() and (kf.groupby("target_class")["knot"].count() >= 2).all()
    assert (kf.groupby("target_class")["fit_err"].diff().dropna() <= 1e-12 * kf["fit_err"].max()).all()  # monotone
    for lam in (0.9, 0.37, 0.1, 0.0301):
        got = _dense(dependency_at(kf, cf, lam), 14, p.targets)
        ref = solve_path(C, [lam], cross=cross, tol=1e-12)
        assert ref.certified
        np.testing.assert_allclose(got, ref.coef[0], atol=1e-9 * np.abs(ref.coef).max())


def test_knots_match_sklearn_lars_lasso_path():
    """An independent reference: scikit-learn's LARS-lasso on a design X with XᵀX/N = Ĉ and Xᵀy/N = b."""
    from sklearn.linear_model import lars_path

    C, F = _problem(n=10, d=10, N=300, seed=5)
    p, kf, cf = _frames(C, lams=(0.01,))
    for t in (0, 4, 7):
        X, y = np.delete(F, t, axis=1), F[:, t]
        alphas, _, coefs = lars_path(X, y, method="lasso")
        # sklearn minimises ‖y − Xw‖²/(2N) + α‖w‖₁, i.e. (wᵀĈw − 2bᵀw)/2 + α‖w‖₁: λ = 2α
        lam_sk = 2 * alphas
        mine = kf[kf["target_class"] == t]["lambda_abs"].to_numpy()
        keep = lam_sk > mine[-1] * (1 + 1e-9)  # our last knot is the end of the range, not a breakpoint
        np.testing.assert_allclose(mine[:-1], lam_sk[keep], rtol=1e-7)
        for lam, w in zip(lam_sk[keep], coefs.T[keep]):
            got = _dense(dependency_at(kf[kf["target_class"] == t], cf, float(lam), relative=False), 10, p.targets)[t]
            np.testing.assert_allclose(np.delete(got, t), w, atol=1e-8)


def test_last_with_at_most_k_and_sparsest_within_x_against_direct_solves():
    C, _ = _problem(seed=2)
    p, kf, cf = _frames(C)
    last = last_with_at_most(kf, cf, 3)
    for t, g in last.groupby("target_class"):
        lam = float(g["lambda_abs"].iloc[0])
        ref = solve_path(C, [lam], targets=[t], lambda_mode="absolute", tol=1e-12)
        # at a knot a class is about to enter: the direct solve gives it a round-off coefficient at most
        np.testing.assert_allclose(_dense(g, 14, [t])[0], ref.coef[0, 0], atol=1e-9)
        assert g["source_class"].notna().sum() <= 3
        below = kf[(kf["target_class"] == t) & (kf["lambda_abs"] < lam)]
        assert (below["n_sources"] > 3).all()
    x = 0.05
    sp = sparsest_within(kf, cf, x)
    s = np.diag(C)
    B, excl, _ = target_rhs(C, None, np.arange(14))
    assert (sp["bound"] == "unexplained_share").all()
    for t, g in sp.groupby("target_class"):
        lam = float(g["lambda_abs"].iloc[0])
        ref = solve_path(C, [lam], targets=[t], lambda_mode="absolute", tol=1e-12)
        c = ref.coef[0, 0]
        share = (s[t] - 2 * B[:, t] @ c + c @ C @ c) / s[t]
        assert share <= x + 1e-9 and abs(g["unexplained_share"].iloc[0] - share) <= 1e-9
        assert np.count_nonzero(np.abs(c) > 1e-9) == g["n_sources"].iloc[0]
        np.testing.assert_allclose(_dense(g, 14, [t])[0], c, atol=1e-9)


@pytest.mark.parametrize("seed,x", [(3, 0.05), (14, 0.2), (17, 0.1)])
def test_sparsest_is_the_fewest_sources_anywhere_on_the_path_against_brute_force(seed, x):
    """Supports that are not monotone in λ (a knot further down the path has fewer sources): the fewest sources
    within x over the knots and a fine λ grid (read exactly off the path), ties at the largest λ."""
    C, _ = _problem(seed=seed)
    p, kf, cf = _frames(C, lams=(0.01,))
    sp = sparsest_within(kf, cf, x).groupby("target_class").first()
    s = np.diag(C)
    B, _, _ = target_rhs(C, None, np.arange(14))
    non_monotone = 0
    for t, g in kf.groupby("target_class"):
        lmax = g["lambda_abs"].iloc[0]
        grid = np.concatenate([g["lambda_abs"].to_numpy() / lmax, np.geomspace(1.0, 0.0101, 400)])
        knots = [_dense(dependency_at(g, cf, float(lam)), 14, [t])[0] for lam in g["lambda_abs"] / lmax]
        lams = g["lambda_abs"].to_numpy() / lmax
        cand = []
        for lam in grid:
            a = min(np.searchsorted(-lams, -lam, side="right") - 1, len(lams) - 1)
            b = min(a + 1, len(lams) - 1)
            u = 0.0 if b == a else (lams[a] - lam) / (lams[a] - lams[b])
            c = (1 - u) * knots[a] + u * knots[b]
            if (s[t] - 2 * B[:, t] @ c + c @ C @ c) / s[t] <= x:
                cand.append((np.count_nonzero(np.abs(c) > 1e-13), -lam))
        if not cand:
            assert t not in sp.index
            continue
        fewest, neg_lam = min(cand)
        assert sp.loc[t, "n_sources"] == fewest
        assert sp.loc[t, "lambda_rel"] >= -neg_lam * (1 - 1e-9)  # the exact root lies at or above the grid's
        first = g[g["unexplained_share"] <= x].iloc[0]  # the largest knot λ within x: what "sparsest" used to be
        non_monotone += int(first["n_sources"] > fewest)
    assert non_monotone >= 1


def test_chunked_runs_give_the_same_path_rows():
    C, _ = _problem(seed=4)
    _, kf, cf = _frames(C)
    parts = [_frames(C, targets=np.arange(a, min(a + 5, 14))) for a in range(0, 14, 5)]
    pd.testing.assert_frame_equal(kf, pd.concat([q[1] for q in parts], ignore_index=True))
    pd.testing.assert_frame_equal(cf, pd.concat([q[2] for q in parts], ignore_index=True))


def test_bad_input_names_the_parameter():
    C, _ = _problem()
    _, kf, cf = _frames(C)
    with pytest.raises(ValueError, match="lam .* below the stored path"):
        dependency_at(kf, cf, 0.01)
    with pytest.raises(ValueError, match="lam"):
        dependency_at(kf, cf, 1.5)
    with pytest.raises(ValueError, match="k "):
        last_with_at_most(kf, cf, -1)
    for x in (0.0, 1.2, float("nan")):
        with pytest.raises(ValueError, match="x "):
            sparsest_within(kf, cf, x)
    with pytest.raises(ValueError, match="bound"):
        sparsest_on_grid(kf, cf, 0.1, bound="fit_rel_err")


@pytest.mark.parametrize("gauge", ["raw", "centered"])
def test_analysis_path_tables_are_the_same_chunked_within_and_between(gauge):
    from neudep_assets.lib.analysis import analyse, second_moment
    from neudep_assets.lib.analysis.offsets import apply_gauge

    _, F = _problem(n=11, seed=6)
    G = F + 0.2 * F @ np.random.default_rng(1).normal(size=(11, 11))
    F, G = apply_gauge(F, gauge), apply_gauge(G, gauge)
    labels = np.arange(F.shape[0]) % 11
    for kw in ({}, {"cross": second_moment(F, G), "eval_target": G, "target_second_moment": (G ** 2).mean(0)}):
        one, chunked = (analyse(second_moment(F), [0.4, 0.05], eval_source=F, eval_labels=labels, store_path=True,
                                target_chunk=c, **kw) for c in (None, 4))
        assert set(one.path_tables) == {"dependency_path_knots", "dependency_path"}
        for t in one.path_tables:
            pd.testing.assert_frame_equal(one.path_tables[t], chunked.path_tables[t])
    assert analyse(second_moment(F), [0.1], eval_source=F, eval_labels=labels).path_tables == {}
