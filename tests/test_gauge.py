"""The centered gauge without leaks (issue 19): each target's problem against a brute force on the samples
(sources centred by the mean over the other classes, the excluded logits really left out), a planted model
where neither gauge may find a dependency, the raw analysis where the gauge changes nothing, chunks, engines
and the stored path."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Lasso

from neudep_assets.lib.analysis import analyse, second_moment
from neudep_assets.lib.analysis.offsets import apply_gauge
from neudep_assets.lib.covlasso import solve_path
from neudep_assets.lib.covlasso.path import dependency_at


def _logits(seed=0, N=3000, n=12, d=30, offset=3.0):
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(N, d))
    F = H @ rng.normal(size=(d, n)) / np.sqrt(d) + 0.3 * rng.normal(size=(N, n)) + rng.normal(-offset, 1, size=(N, 1))
    G = F @ rng.normal(size=(n, n)) * 0.3 + F + rng.normal(2, 1, size=(N, 1))
    return F, G


def _centered(F, G=None, lams=(0.3, 0.05), **kw):
    """The analysis in the centered gauge, from the centred logits' moments as the pipeline computes them."""
    Fc = apply_gauge(F, "centered")
    if G is None:
        return analyse(second_moment(Fc), list(lams), eval_source=Fc, eval_labels=F.argmax(1), gauge="centered", **kw)
    Gc = apply_gauge(G, "centered")
    return analyse(second_moment(Fc), list(lams), eval_source=Fc, eval_labels=G.argmax(1), gauge="centered",
                   cross=second_moment(Fc, Gc), eval_target=Gc, target_second_moment=(Gc ** 2).mean(0), **kw)


def _brute(F, Y, i):
    """Target i's problem on the samples: sources f_j (j ≠ i) minus their mean over j ≠ i; target y_i − mean(y)."""
    X = np.delete(F, i, axis=1)
    return X - X.mean(axis=1, keepdims=True), Y[:, i] - Y.mean(axis=1)


@pytest.mark.parametrize("between", [False, True])
def test_each_target_against_a_brute_force_on_the_samples(between):
    F, G = _logits()
    Y = G if between else F
    res = _centered(F, G if between else None)
    assert res.path.certified and res.path.gauge == "centered"
    n = F.shape[1]
    pt = res.per_target.set_index(["lambda_index", "target_class"])
    for i in range(n):
        X, y = _brute(F, Y, i)
        # err0: the least-squares residual, the excluded logit really excluded
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        assert res.per_class.err0[i] == pytest.approx(((y - X @ w) ** 2).mean(), rel=1e-9)
        for li in range(2):
            lam = res.path.lambda_abs[li, i]
            ref = Lasso(alpha=lam / 2, fit_intercept=False, tol=1e-14, max_iter=200_000).fit(X, y).coef_
            t = np.delete(res.path.coef[li, i], i)
            np.testing.assert_allclose(t, ref, atol=1e-8 * np.abs(ref).max() + 1e-12)
            e = y - X @ t
            row = pt.loc[(li, i)]
            assert row["fit_err"] == pytest.approx((e ** 2).mean(), rel=1e-9)
            assert row["rel_err"] == pytest.approx(np.abs(e).mean() / np.abs(y).mean(), rel=1e-9)
            # Acc: the raw logit i replaced by m₋ᵢ + (n/(n−1))·r, i.e. y = ((n−1)/n)(Y_i − m₋ᵢ) reconstructed
            Yhat = Y.copy()
            Yhat[:, i] = np.delete(Y, i, axis=1).mean(1) + n / (n - 1) * (X @ t)
            assert row["acc"] == pytest.approx((Yhat.argmax(1) == Y.argmax(1)).mean(), abs=1e-12)


def test_independent_logits_with_a_common_offset_have_no_dependency_in_either_gauge():
    """Independent Gaussian logits plus one large common offset. Raw, the offset makes every class "depend"
    on the others (their mean estimates it); centered, nothing is left to explain: rel_err0 ≈ 1 − (n − 2)/N
    (the sampling noise of n − 2 regressors), not the leak's 1e-12, and no sparse dependency at λ_rel 0.1."""
    rng = np.random.default_rng(4)
    N, n = 4000, 40
    F = rng.normal(size=(N, n)) + rng.normal(0, 5, size=(N, 1))
    res = _centered(F, lams=(0.1, 0.02))
    rel0 = res.per_class["rel_err0"].to_numpy()
    assert np.all(np.abs(rel0 - (1 - (n - 2) / N)) < 0.05)
    at = res.per_target[res.per_target["lambda_index"] == 0]
    assert not ((at["n_sources"] >= 1) & (at["rel_err"] <= 0.2)).any() and (at["unexplained_share"] > 0.9).all()
    raw = analyse(second_moment(F), [0.1], eval_source=F, eval_labels=F.argmax(1))
    assert raw.per_class["rel_err0"].median() < 0.1  # raw: the offset, explained by the others' mean


def test_the_old_leak_is_gone_where_the_feature_width_exceeds_the_classes():
    """d = 200 > n = 62: nothing is an exact linear function of the others, raw or centred (the leak made
    every centered rel_err0 ≈ 1e-12)."""
    F, _ = _logits(seed=5, N=2500, n=62, d=200)
    res = _centered(F, lams=(0.5,))
    assert res.per_class["rel_err0"].min() > 0.01


@pytest.mark.parametrize("between", [False, True])
def test_where_the_sources_carry_no_offset_the_centered_gauge_is_the_raw_analysis(between):
    """What "match" means: target i's centred problem is the raw one exactly when the mean of the other
    classes, m₋ᵢ, is 0 on every sample, for the sources (then h_j = f_j) and, between, for the target model
    too. The target f̃_i (or g̃_i) is then ((n−1)/n)·f_i: errors relative to the target (rel_err0, Rel Err,
    the unexplained share), supports and accuracies agree, and the coefficients scale by (n−1)/n. Other
    targets see other sources (their m₋ⱼ ≠ 0) and need not agree: that is the exclusion, not a mismatch."""
    rng = np.random.default_rng(6)
    N, n, i = 3000, 10, 3
    others = np.delete(np.arange(n), i)

    def no_offset_but_i(X, own):
        X[:, others] -= X[:, others].mean(axis=1, keepdims=True)  # m₋ᵢ = 0
        X[:, i] = own
        return X

    F = rng.normal(size=(N, n)) @ rng.normal(size=(n, n))
    F = no_offset_but_i(F, 0.7 * F[:, 0] - 0.4 * F[:, 5] + 0.1 * rng.normal(size=N))
    lams = [0.95, 0.3, 0.05]  # Theorem 3 screens only near λ_max
    G, kw, labels = None, {}, F.argmax(1)
    if between:
        G = F @ rng.normal(size=(n, n)) * 0.5 + 0.2 * rng.normal(size=(N, n))
        G = no_offset_but_i(G, F[:, 2] - 0.5 * F[:, 8] + 0.3 * rng.normal(size=N))
        kw, labels = dict(cross=second_moment(F, G), eval_target=G, target_second_moment=(G ** 2).mean(0)), G.argmax(1)
    raw = analyse(second_moment(F), lams, eval_source=F, eval_labels=labels, **kw)
    cen = _centered(F, G, lams=lams)
    assert cen.per_class.loc[i, "rel_err0"] == pytest.approx(raw.per_class.loc[i, "rel_err0"], rel=1e-8)
    np.testing.assert_allclose(cen.path.coef[:, i], (n - 1) / n * raw.path.coef[:, i], atol=1e-9)
    rc, rr = (r.per_target[r.per_target["target_class"] == i].reset_index(drop=True) for r in (cen, raw))
    for col in ("rel_err", "unexplained_share", "n_sources", "acc", "pos_acc", "thm3_screened", "conj1_screened",
                "thm3_violations", "conj1_violations"):
        np.testing.assert_allclose(rc[col], rr[col], rtol=1e-8, atol=1e-12, err_msg=col)
    assert rc["thm3_screened"].sum() > 0 and cen.per_class.loc[i, "eq5_violations"] == 0


@pytest.mark.parametrize("between", [False, True])
def test_chunks_engines_and_the_stored_path_give_the_same_centered_analysis(between):
    F, G = _logits(seed=7, n=15)
    one = _centered(F, G if between else None, store_path=True)
    chunked = _centered(F, G if between else None, store_path=True, target_chunk=4)
    pd.testing.assert_frame_equal(one.per_target, chunked.per_target)
    pd.testing.assert_frame_equal(one.per_class, chunked.per_class)
    for t in one.path_tables:
        pd.testing.assert_frame_equal(one.path_tables[t], chunked.path_tables[t])
    # the working-set engine on the same per-target problems
    Fc, Gc = apply_gauge(F, "centered"), apply_gauge(G, "centered")
    C, cross = second_moment(Fc), (second_moment(Fc, Gc) if between else None)
    hom, ws = (solve_path(C, [0.3, 0.05], cross=cross, gauge="centered", method=m) for m in ("homotopy", "working_set"))
    assert ws.certified
    np.testing.assert_allclose(ws.coef, hom.coef, atol=1e-10)
    # the stored path at any λ is the centered solve there, and its unexplained share the solve's
    kn, cf = one.path_tables["dependency_path_knots"], one.path_tables["dependency_path"]
    for t in (0, 7):
        at = dependency_at(kn[kn["target_class"] == t], cf, 0.17)
        ref = solve_path(C, [0.17], cross=cross, targets=[t], gauge="centered", tol=1e-12).coef[0, 0]
        got = np.zeros(15)
        got[at["source_class"].to_numpy(int)] = at["coef"].to_numpy()
        np.testing.assert_allclose(got, ref, atol=1e-9)
    Y = G if between else F
    X, y = _brute(F, Y, 7)
    k7 = kn[kn["target_class"] == 7]
    last = k7.iloc[-1]
    t = np.zeros(15)
    rows = cf[(cf["target_class"] == 7) & (cf["knot"] == last["knot"])]
    t[rows["source_class"].to_numpy(int)] = rows["coef"].to_numpy()
    e = y - X @ np.delete(t, 7)
    assert last["unexplained_share"] == pytest.approx((e ** 2).mean() / (y ** 2).mean(), rel=1e-8)


def test_a_gauge_that_does_not_exist_is_refused_naming_it():
    F, _ = _logits(n=5)
    with pytest.raises(ValueError, match="gauge must be one of raw, centered"):
        solve_path(second_moment(F), [0.1], gauge="centred")
    with pytest.raises(ValueError, match="gauge"):
        analyse(second_moment(F), [0.1], eval_source=F, eval_labels=F.argmax(1), gauge="mean")


@pytest.mark.parametrize("between", [False, True])
def test_the_torch_homotopy_solves_the_centered_gauge_as_the_numba_one_does(between, monkeypatch):
    """The batched torch path (on the CPU here; the same code runs on CUDA) applies each target's correction
    where it reads C: same coefficients as the numba kernels, certified, nothing handed back to numba."""
    from neudep_assets.lib.covlasso import solver

    F, G = _logits(seed=9, n=16)
    Fc = apply_gauge(F, "centered")
    C = second_moment(Fc)
    cross = second_moment(Fc, apply_gauge(G, "centered")) if between else None
    want = solve_path(C, [0.3, 0.1, 0.02], cross=cross, gauge="centered")

    def no_fallback(*args, **kwargs):  # a target the torch path got wrong would be re-solved by numba here
        raise AssertionError("the torch path handed targets back to numba")
    monkeypatch.setattr(solver, "_solve_numba", no_fallback)
    got = solve_path(C, [0.3, 0.1, 0.02], cross=cross, gauge="centered", device="torch:cpu")
    assert got.device == "torch:cpu" and got.certified and (got.status == 0).all()
    np.testing.assert_allclose(got.coef, want.coef, atol=1e-9 * np.abs(want.coef).max())


def test_the_kernels_apply_the_correction_on_the_fly_and_a_zero_one_changes_no_bit():
    """The kernels read Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ without forming it: with v = 0, κ = 0 the path is the raw one bit
    for bit; with a target's own (v, κ) it is the raw homotopy on the explicitly formed Ĉ."""
    import numba

    from neudep_assets.lib.covlasso import numba_kernel as K
    from neudep_assets.lib.covlasso.gauge import correction
    from neudep_assets.lib.covlasso.solver import target_rhs

    F, _ = _logits(seed=11, n=14)
    C = second_moment(apply_gauge(F, "centered"))
    T = n = 14
    B, excl, lam_max = target_rhs(C, None, np.arange(T), "centered")
    mus = np.ascontiguousarray((0.5 * np.array([0.3, 0.1, 0.02])[:, None] * lam_max[None, :]).T)

    def run(C, B, excl, mus, V, kap):
        L, T = mus.shape[1], B.shape[1]
        out = [np.empty((L, T, n)), np.empty((L, T), np.int64), np.empty((L, T), np.int64), np.empty((L, T))]
        K.solve_many(C, B, excl, mus, 1e-12, 10 * n + 1000, *out, np.zeros((T, 6), np.int64), V, kap,
                     numba.get_num_threads())
        return out[0]

    plain = run(C, B, excl, mus, np.zeros((0, T), order="F"), np.zeros(T))
    zero = run(C, B, excl, mus, np.zeros((n, T), order="F"), np.zeros(T))
    np.testing.assert_array_equal(zero, plain)
    V, kap = correction(C, excl, "centered")
    got = run(C, B, excl, mus, V, kap)
    for i in (0, 5, 13):
        Ch = C + V[:, i][:, None] + V[:, i][None, :] + kap[i]
        ref = run(Ch, B[:, [i]], excl[[i]], mus[[i]], np.zeros((0, 1), order="F"), np.zeros(1))
        np.testing.assert_allclose(got[:, i], ref[:, 0], atol=1e-10 * np.abs(ref).max())
        assert np.abs(got[:, i] - plain[:, i]).max() > 1e-6  # the correction does change the problem
