"""CovLasso engine: agreement with an independent solver, closed forms, theory hooks, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neudep_assets.lib.covlasso import kkt_violation, path_errors, solve_path, target_rhs

# ----------------------------------------------------------------------------- data


def _logits(N, n, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    if rank is None:
        F = rng.normal(size=(N, n)) + 0.5 * rng.normal(size=(N, 1))
    else:
        F = rng.normal(size=(N, rank)) @ rng.normal(size=(rank, n))
    return F


def _moments(F, G=None):
    N = F.shape[0]
    C = F.T @ F / N
    C = 0.5 * (C + C.T)
    if G is None:
        return C
    return C, F.T @ G / N, np.einsum("ij,ij->j", G, G) / N


def _reference(C, b, keep, lam):
    """cvxpy + CLARABEL at tight tolerances on one problem (an independent solver)."""
    cp = pytest.importorskip("cvxpy")
    Ch = C[np.ix_(keep, keep)]
    t = cp.Variable(keep.size)
    obj = cp.quad_form(t, cp.psd_wrap(Ch)) - 2 * b[keep] @ t + lam * cp.norm1(t)
    cp.Problem(cp.Minimize(obj)).solve(
        solver="CLARABEL", tol_gap_abs=1e-13, tol_gap_rel=1e-13, tol_feas=1e-13, max_iter=500
    )
    out = np.zeros(C.shape[0])
    out[keep] = t.value
    return out


@pytest.fixture(params=["homotopy", "working_set"])
def method(request, monkeypatch):
    """Both CPU engines; the working set starts at 2 sources so that it grows even on small problems (where
    many targets still end in its fallback, the full homotopy: the block path itself is checked, with its
    rounds and fallbacks counted, by test_working_set_grows_and_finds_the_homotopy_solutions)."""
    from neudep_assets.lib.covlasso import solver

    monkeypatch.setattr(solver, "WS_START", 2)
    return request.param


# ----------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("mode", ["within", "between"])
@pytest.mark.parametrize("lambda_mode", ["relative", "absolute"])
@pytest.mark.parametrize("rank", [None, 4])
def test_agrees_with_cvxpy_clarabel(mode, lambda_mode, rank, method):
    n = 9
    F = _logits(60, n, rank=rank, seed=1)
    if mode == "within":
        C, cross = _moments(F), None
    else:
        G = F @ np.random.default_rng(2).normal(size=(n, n)) * 0.3 + 0.2 * np.random.default_rng(3).normal(size=(60, n))
        C, cross, _ = _moments(F, G)
    if lambda_mode == "relative":
        lams = [0.6, 0.15, 0.03]
    else:
        lams = [float(np.abs(C).max()), 0.3, 0.05]
    p = solve_path(C, lams, cross=cross, lambda_mode=lambda_mode, method=method)
    assert p.coef.shape == (3, n, n) and p.kkt.shape == (3, n)
    assert p.kkt.max() <= 1e-10
    B = C if cross is None else cross
    for k, i in enumerate(p.targets):
        keep = np.r_[0:i, i + 1 : n]
        for l in range(len(lams)):
            ref = _reference(C, B[:, i], keep, p.lambda_abs[l, k])
            np.testing.assert_allclose(p.coef[l, k], ref, atol=1e-6, err_msg=f"target {i} lambda {lams[l]}")
            assert p.coef[l, k, i] == 0.0


def test_between_with_more_target_classes_than_sources():
    """cross (n, m), m > n: targets i ≥ n have no own class among the sources."""
    rng = np.random.default_rng(4)
    F = _logits(80, 6, seed=4)
    G = np.c_[F @ rng.normal(size=(6, 6)), F[:, :2] - F[:, 3:5]]  # m = 8
    C, cross, _ = _moments(F, G)
    p = solve_path(C, [0.2], cross=cross, targets=[1, 7])
    assert p.kkt.max() <= 1e-10
    for k, i in enumerate([1, 7]):
        keep = np.r_[0:i, i + 1 : 6] if i < 6 else np.arange(6)
        ref = _reference(C, cross[:, i], keep, p.lambda_abs[0, k])
        np.testing.assert_allclose(p.coef[0, k], ref, atol=1e-6)


# ----------------------------------------------------------------------------- closed forms


def test_lambda_at_or_above_max_gives_zero():
    C = _moments(_logits(100, 8, seed=5))
    p = solve_path(C, [1.0, 1.7, 0.999])
    assert np.all(p.coef[:2] == 0) and np.all(p.n_active[:2] == 0)
    assert np.all(p.n_active[2] >= 1)
    pa = solve_path(C, p.lambda_max.max() * np.array([1.0, 2.0]), lambda_mode="absolute")
    assert np.all(pa.coef == 0)
    lm = 2 * np.max(np.abs(C - np.diag(np.diag(C))), axis=0)  # λ_max = 2‖b‖_∞ within
    np.testing.assert_allclose(p.lambda_max, lm)


def test_single_active_variable_closed_form():
    C = _moments(_logits(100, 10, seed=6))
    p = solve_path(C, [0.97])
    checked = 0
    for k, i in enumerate(p.targets):
        if p.n_active[0, k] != 1:
            continue
        j = int(np.flatnonzero(p.coef[0, k])[0])
        b = C[j, i]
        lam = p.lambda_abs[0, k]
        assert abs(b) * 2 == pytest.approx(p.lambda_max[k])  # the most correlated class enters first
        assert p.coef[0, k, j] == pytest.approx((b - lam / 2 * np.sign(b)) / C[j, j], rel=1e-12)
        checked += 1
    assert checked >= 5


def test_planted_exact_dependency_is_recovered():
    F = _logits(500, 16, seed=7)
    F[:, 7] = 0.5 * F[:, 3] + 0.25 * F[:, 11]
    C = _moments(F)
    p = solve_path(C, [1e-3, 1e-6, 0.0], targets=[7])
    expect = np.zeros(16)
    expect[[3, 11]] = [0.5, 0.25]
    np.testing.assert_allclose(p.coef[1, 0], expect, atol=1e-5)
    np.testing.assert_allclose(p.coef[2, 0], expect, atol=1e-9)
    assert set(np.flatnonzero(p.coef[0, 0])) == {3, 11}
    assert p.kkt.max() <= 1e-10


# ----------------------------------------------------------------------------- certificate


def test_certificate_is_exact_zero_only_for_optimal_points():
    C = _moments(_logits(100, 12, seed=8))
    p = solve_path(C, [0.3, 0.05])
    tg = p.targets
    ref = kkt_violation(C, p.coef[1], C[:, tg], tg, p.lambda_abs[1], p.lambda_max)
    np.testing.assert_allclose(ref, p.kkt[1], atol=1e-15)  # dense numpy vs the sparse kernel
    bad = p.coef[1].copy()
    bad[:, :] *= 1.01  # a slightly shrunk/inflated solution is not optimal...
    v = kkt_violation(C, bad, C[:, tg], tg, p.lambda_abs[1], p.lambda_max)
    assert np.all(v[p.n_active[1] > 0] > 1e-6)
    wrong_sign = p.coef[1].copy()
    k = int(np.argmax(p.n_active[1] < 11))
    j = next(j for j in range(12) if j != tg[k] and wrong_sign[k, j] == 0)
    c_j = C[j, tg[k]] - C[j] @ p.coef[1, k]  # correlation of the inactive class j
    wrong_sign[k, j] = -1e-14 * (np.sign(c_j) or 1.0)  # ...nor a tiny coefficient of the wrong sign
    v = kkt_violation(C, wrong_sign, C[:, tg], tg, p.lambda_abs[1], p.lambda_max)
    assert v[k] > 1e-3


@pytest.mark.parametrize("mode", ["within", "between"])
def test_rank_deficient_and_degenerate_are_certified(mode, method):
    """d < n (rank 12 of 60), duplicated, negated, scaled and all-zero classes, down to λ = 0."""
    F = _logits(400, 60, rank=12, seed=9)
    F[:, 5] = F[:, 3]
    F[:, 6] = -F[:, 4]
    F[:, 9] = 0.0
    F[:, 20] *= 1e3
    if mode == "within":
        C, cross = _moments(F), None
    else:
        G = F @ np.random.default_rng(10).normal(size=(60, 60)) * 0.1 + np.random.default_rng(11).normal(size=(400, 60))
        C, cross, _ = _moments(F, G)
    lams = list(np.geomspace(0.9, 1e-4, 12)) + [0.0]
    p = solve_path(C, lams, cross=cross, method=method)
    assert p.kkt.max() <= 1e-10, np.argwhere(p.kkt > 1e-10)
    assert np.all(p.status < 2)
    assert p.n_active.max() <= 12  # never more active classes than the rank of C
    assert np.all(p.coef[:, :, 9] == 0)  # the dead class is never a source...
    if mode == "within":
        assert np.all(p.coef[:, 9, :] == 0)  # ...and, as a target, has nothing to explain


def test_fallbacks_polisher_and_restart_reach_the_same_certified_solutions():
    """The repair paths, forced: the polisher from t = 0, and a homotopy cut short after two
    breakpoints (the rest of the path is then solved by the warm-started polisher)."""
    import numba

    from neudep_assets.lib.covlasso import numba_kernel as K

    C = _moments(_logits(200, 25, rank=10, seed=20) + 0.1 * _logits(200, 25, seed=21))
    lams = np.geomspace(0.8, 0.01, 6)
    ref = solve_path(C, lams)
    assert np.all(ref.status == 0)
    tg = ref.targets
    B, excl, lam_max = target_rhs(C, None, tg)
    mus = np.ascontiguousarray(0.5 * ref.lambda_abs.T)
    # polisher alone, cold
    L_, T = mus.shape[1], tg.size
    start = np.zeros((T, 25))
    K.polish_many(C, B, excl, mus[:, 3].copy(), 0.5 * lam_max, start, 1e-12, np.zeros((0, T)), np.zeros(T))
    np.testing.assert_allclose(start, ref.coef[3], atol=1e-8)
    # homotopy cut short: status 1 (repaired) after the cut, same solutions
    out = (np.empty((L_, T, 25)), np.empty((L_, T), np.int64), np.empty((L_, T), np.int64), np.empty((L_, T)))
    info = np.zeros((T, 6), np.int64)
    K.solve_many(C, B, excl, mus, 1e-12, 2, *out, info, np.zeros((0, T)), np.zeros(T), numba.get_num_threads())
    coef, _, status, kkt = out
    assert np.all(info[:, 4] > 0) and np.all(status[-1] == 1) and kkt.max() <= 1e-12
    np.testing.assert_allclose(coef, ref.coef, atol=1e-8)


@pytest.mark.parametrize("mode", ["within", "between"])
def test_working_set_grows_and_finds_the_homotopy_solutions(mode):
    """n = 300 classes of rank 40: the working set starts at 4 sources and must grow (sources outside it
    violate the optimality conditions) to reach the full homotopy's solutions, on the block alone; a
    working set capped below what a target needs falls back to the full homotopy (same solutions)."""
    import numba

    from neudep_assets.lib.covlasso.numba_workingset import solve_many_ws

    n = 300
    F = _logits(2000, n, rank=40, seed=30) + 0.05 * _logits(2000, n, seed=31)
    C, cross, _ = _moments(F, F @ np.random.default_rng(32).normal(size=(n, n)) * 0.05 + _logits(2000, n, seed=33))
    cross = None if mode == "within" else cross
    lams = [0.5, 0.2, 0.05, 0.01]
    ref = solve_path(C, lams, cross=cross, method="homotopy")
    tg = ref.targets
    B, excl, lam_max = target_rhs(C, cross, tg)
    mus = np.ascontiguousarray(0.5 * ref.lambda_abs.T)
    for m0, max_ws in [(4, 4096), (4, 8)]:
        out = (np.empty((4, n, n)), np.empty((4, n), np.int64), np.empty((4, n), np.int64), np.empty((4, n)))
        info, ws_info = np.zeros((n, 6), np.int64), np.full((n, 2), -1, np.int64)
        solve_many_ws(C, B, excl, mus, 1e-9, m0, max_ws, *out, info, ws_info, np.zeros((0, n)), np.zeros(n),
                      numba.get_num_threads())
        coef, nact, status, kkt = out
        rounds, fell_back = ws_info.T
        if max_ws > 8:
            # 286 and 282 of 300 targets solved on blocks grown in 3–4 rounds; the rest need over n/2 sources at 0.01
            assert fell_back.mean() < 0.1 and rounds[fell_back == 0].min() >= 2
        else:
            assert fell_back.sum() > n // 2  # a block of 8 rarely holds a target's solutions down to 0.01
        assert kkt.max() <= 1e-9 and np.all(status < 2)
        np.testing.assert_allclose(coef, ref.coef, atol=1e-10 * np.abs(ref.coef).max())
        np.testing.assert_array_equal(nact, ref.n_active)


@pytest.mark.parametrize("min_n, used", [(6000, 0), (100, 1)])
def test_auto_takes_the_working_set_from_ws_min_n_up(monkeypatch, min_n, used):
    """method="auto": the full homotopy below WS_MIN_N sources (faster there), the working set from it
    up; the same rows either way."""
    from neudep_assets.lib.covlasso import numba_workingset, solver

    C = _moments(_logits(1500, 300, rank=40, seed=34))
    ref = solve_path(C, [0.3, 0.05], method="homotopy")
    calls, orig = [], numba_workingset.solve_many_ws
    monkeypatch.setattr(numba_workingset, "solve_many_ws", lambda *a: calls.append(1) or orig(*a))
    monkeypatch.setattr(solver, "WS_MIN_N", min_n)
    auto = solve_path(C, [0.3, 0.05])
    assert len(calls) == used
    np.testing.assert_allclose(auto.coef, ref.coef, atol=1e-10 * np.abs(ref.coef).max())
    np.testing.assert_array_equal(auto.n_active, ref.n_active)
    solve_path(C, [0.3], knots=True)  # the exact path: always the full homotopy
    assert len(calls) == used


def test_order_subsets_and_duplicates_of_lambdas():
    C = _moments(_logits(150, 20, rank=8, seed=12))
    lams = [0.05, 0.5, 0.05, 0.2]
    p = solve_path(C, lams)
    np.testing.assert_array_equal(p.lambdas, lams)
    np.testing.assert_array_equal(p.coef[0], p.coef[2])
    sub = solve_path(C, [0.2, 0.5], targets=[3, 17])
    np.testing.assert_allclose(sub.coef[0], p.coef[3][[3, 17]], atol=1e-12)
    np.testing.assert_allclose(sub.coef[1], p.coef[1][[3, 17]], atol=1e-12)
    assert sub.lambda_mode == "relative" and sub.mode == "within" and sub.certified


# ----------------------------------------------------------------------------- theory hooks


def test_eq5_error_is_monotone_and_bounded_along_every_path():
    rng = np.random.default_rng(13)
    F = _logits(300, 30, rank=10, seed=13) + 0.05 * rng.normal(size=(300, 30))
    C = _moments(F)
    lams = np.r_[np.geomspace(1.2, 1e-3, 25), 0.0]
    p = solve_path(C, lams)
    err = path_errors(C, p.coef, target_rhs(C, None, p.targets)[0], np.diag(C))  # (L, T), decreasing λ
    assert np.all(np.diff(err, axis=0) <= 1e-12 * np.diag(C).max())  # non-increasing as λ drops
    np.testing.assert_allclose(err[0], np.diag(C))  # λ ≥ λ_max: err = C_ii
    for i in range(30):  # err_i(θ*(0)): least-squares residual of f_i on the others
        X = np.delete(F, i, axis=1)
        r = F[:, i] - X @ np.linalg.lstsq(X, F[:, i], rcond=None)[0]
        ls = r @ r / F.shape[0]
        assert err[-1, i] == pytest.approx(ls, rel=1e-6, abs=1e-12)
        assert np.all(err[:, i] >= ls - 1e-10)


def test_eq5_between_quadratic_part_is_monotone():
    F = _logits(300, 25, rank=8, seed=14)
    G = F @ np.random.default_rng(15).normal(size=(25, 25)) * 0.2 + np.random.default_rng(16).normal(size=(300, 25))
    C, cross, gg = _moments(F, G)
    p = solve_path(C, np.geomspace(1.0, 1e-3, 20), cross=cross)
    err = path_errors(C, p.coef, target_rhs(C, cross, p.targets)[0], gg)
    assert np.all(np.diff(err, axis=0) <= 1e-12)
    assert np.all(err >= -1e-12) and np.all(err <= gg[None, :] + 1e-12)


def test_conjecture1_screening_is_not_safe_but_solver_is():
    """A suppressor: f_2 = z2 is uncorrelated with the target f_0 = z1 (|b_2| = 0 < λ/2, so
    Conjecture 1 screens it out) yet the optimum uses it to cancel z2 inside f_1 = z1 + z2."""
    rng = np.random.default_rng(17)
    z = rng.normal(size=(4000, 2))
    z -= z.mean(0)
    z[:, 1] -= z[:, 0] * (z[:, 0] @ z[:, 1]) / (z[:, 0] @ z[:, 0])  # exactly uncorrelated
    F = np.c_[z[:, 0], z[:, 0] + z[:, 1], z[:, 1]]
    C = _moments(F)
    p = solve_path(C, [0.1], targets=[0])
    lam = p.lambda_abs[0, 0]
    assert abs(C[2, 0]) < lam / 2  # Conjecture 1 would set t_2 = 0 ...
    assert p.coef[0, 0, 2] < -0.5  # ... the certified optimum does not
    assert p.kkt.max() <= 1e-12
    screened = p.coef[0].copy()
    screened[0, 2] = 0.0  # what a solver trusting the rule would return (even refit on the rest)
    screened[0, 1] = (C[1, 0] - lam / 2) / C[1, 1]
    v = kkt_violation(C, screened, C[:, [0]], np.array([0]), p.lambda_abs[0], p.lambda_max)
    assert v[0] > 0.1


# ----------------------------------------------------------------------------- torch path


@pytest.mark.parametrize("mode", ["within", "between"])
def test_torch_batched_path_matches_numba_on_cpu(mode):
    """The GPU code path, run on the CPU (one torch thread, see conftest) against numba."""
    rng = np.random.default_rng(18)
    F = np.maximum(rng.normal(size=(300, 16)), 0) @ rng.normal(size=(16, 40)) + 0.05 * rng.normal(size=(300, 40))
    if mode == "within":
        C, cross = _moments(F), None
    else:
        C, cross, _ = _moments(F, F @ rng.normal(size=(40, 40)) * 0.2 + rng.normal(size=(300, 40)))
    lams = list(np.geomspace(0.9, 1e-3, 8))
    a = solve_path(C, lams, cross=cross)
    b = solve_path(C, lams, cross=cross, device="torch:cpu")
    assert b.device == "torch:cpu" and b.kkt.max() <= 1e-10
    np.testing.assert_allclose(b.coef, a.coef, atol=1e-8)


def test_torch_batched_path_certifies_degenerate_input():
    F = _logits(200, 30, rank=8, seed=19)
    F[:, 5] = F[:, 3]
    F[:, 9] = 0.0
    p = solve_path(_moments(F), list(np.geomspace(0.9, 1e-4, 6)) + [0.0], device="torch:cpu")
    assert p.kkt.max() <= 1e-10 and p.n_active.max() <= 8


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(C=np.ones((3, 4))), "square"),
        (dict(C=np.array([[1.0, 0.5], [0.2, 1.0]])), "not symmetric"),
        (dict(C=np.array([[1.0, np.nan], [np.nan, 1.0]])), "NaN/Inf"),
        (dict(C=np.array([[np.inf, 0.0], [0.0, 1.0]])), "NaN/Inf"),
        (dict(C=np.array([[-1.0, 0.0], [0.0, 1.0]])), "positive semidefinite"),
        (dict(C=np.ones(3)), "2-D"),
        (dict(lambdas=[0.1, -0.2]), ">= 0"),
        (dict(lambdas=[np.nan]), "NaN/Inf"),
        (dict(lambdas=[]), "non-empty"),
        (dict(cross=np.ones((4, 3))), "cross must have shape"),
        (dict(cross=np.full((3, 3), np.nan)), "cross contains"),
        (dict(targets=[0, 3]), "targets must lie"),
        (dict(targets=[0.5]), "integer"),
        (dict(lambda_mode="percent"), "lambda_mode"),
        (dict(tol=0.0), "tol"),
        (dict(device="tpu"), "device"),
        (dict(method="lars"), "method"),
    ],
)
def test_invalid_input_raises_value_error(kwargs, message):
    args = dict(C=np.eye(3) + 0.1, lambdas=[0.1])
    args.update(kwargs)
    C = args.pop("C")
    lambdas = args.pop("lambdas")
    with pytest.raises(ValueError, match=message):
        solve_path(C, lambdas, **args)
