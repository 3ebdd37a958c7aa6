"""Benchmark of the CovLasso engine against scikit-learn, celer and cvxpy (a script, not a test).

    python bench/covlasso.py                                   # the full table (≈ 30–60 min on 2 cores)
    python bench/covlasso.py --n 100 300 --d 256 --peers sklearn celer cvxpy --cvxpy-targets 5

Data: synthetic logits shaped like a real classifier's: L = H Wᵀ + bias with H (N × d)
nonnegative features that carry class (and super-class) structure, N = 20,000; C = LᵀL/N
(rank ≤ d + 1). "between" adds a second, independently drawn model g on the same labels and
uses cross = L_fᵀ L_g / N. Every case solves all n targets at one λ (0.1 λ_max) and along a
10-value relative path (0.9 → 0.02, geometric).

Printed per case: seconds for all targets, the cost in matmul equivalents (time ÷ one n × n
float64 matmul timed in the same process: absolute seconds drift on shared machines, ratios in
one process do not), the ratio of each peer's time to ours (peer / neudep, > 1 means neudep is
faster), and the worst relative KKT violation (the same certificate for everyone, from C; for
peers after zeroing roundoff-level entries). neudep's time is the median of --repeat runs before
the peers and --repeat runs after them; each peer runs once.

Peers, all given what neudep is given (C, and cross between models):
  sklearn-lars  ``lars_path_gram`` on Ĉ per target (exact homotopy), coefficients interpolated
                at the requested λ (as ``LassoLars`` does).
  sklearn-enet  ``enet_path`` (l1_ratio=1) with the precomputed Gram Ĉ and Xy = b, warm-started
                along the path, tol = --peer-tol.
  celer         ``celer_path`` on a compressed design X (r × n, XᵀX = C from one eigh of the
                joint moment, included in its time), tol = --peer-tol.
  homotopy, working_set
                neudep's two CPU engines forced (``solve_path(method=...)``; "ours" is ``auto``, which
                picks the full homotopy below 6,000 classes and the working set from there): what each
                costs at this size; same answers; not counted in "vs fastest peer".
  cvxpy         default solver, ``quad_form(t, psd_wrap(Ĉ)) − 2bᵀt + λ‖t‖₁``, a λ Parameter re-solved
                along the path; timed on --cvxpy-targets targets and extrapolated to all n.
Peers do not import torch; numba and BLAS use the same cores one after the other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from neudep_assets.lib.covlasso import kkt_violation, solve_path  # noqa: E402

PATH = np.geomspace(0.9, 0.02, 10)
SINGLE = np.array([0.1])


# ----------------------------------------------------------------------------- data


def make_model_logits(y, n, d, rng, n_super, sup):
    """One 'model': nonnegative features with class and super-class structure, a linear head."""
    Psup = np.maximum(rng.normal(size=(n_super, d)), 0.0) * (rng.random((n_super, d)) < 0.3)
    Pcls = np.maximum(rng.normal(size=(n, d)), 0.0) * (rng.random((n, d)) < 0.1)
    P = Psup[sup] + 1.5 * Pcls  # (n, d) class prototypes
    N = y.size
    H = np.maximum(P[y] + 0.6 * rng.normal(size=(N, d)), 0.0)  # (N, d) nonnegative features
    W = (P - P.mean(0)) / np.sqrt(d) + 0.02 * rng.normal(size=(n, d))
    bias = 0.1 * rng.normal(size=n)
    return H @ W.T + bias


def make_case(n, d, N=20000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(n, size=N)
    n_super = max(2, n // 20)
    sup = rng.integers(n_super, size=n)
    Lf = make_model_logits(y, n, d, rng, n_super, sup)
    Lg = make_model_logits(y, n, d, rng, n_super, sup)
    C = Lf.T @ Lf / N
    C = 0.5 * (C + C.T)
    cross = Lf.T @ Lg / N
    gg = np.einsum("ij,ij->j", Lg, Lg) / N
    M = np.block([[C, cross], [cross.T, Lg.T @ Lg / N]])
    return C, cross, gg, 0.5 * (M + M.T)


# ----------------------------------------------------------------------------- peers


def _sub(C, B, i, excl):
    if excl >= 0:
        keep = np.r_[0:excl, excl + 1 : C.shape[0]]
        return C[np.ix_(keep, keep)], B[keep, i], keep
    return C.copy(), B[:, i].copy(), np.arange(C.shape[0])


def peer_sklearn_lars(C, B, excl, mus):
    from sklearn.linear_model import lars_path_gram

    T = B.shape[1]
    out = np.zeros((mus.shape[1], T, C.shape[0]))
    for i in range(T):
        G, b, keep = _sub(C, B, i, excl[i])
        mu = mus[i]
        if mu.max() <= 0:
            continue
        alphas, _, coefs = lars_path_gram(
            b, G, n_samples=1, alpha_min=float(mu.min()), method="lasso", copy_Gram=False, max_iter=20 * C.shape[0]
        )
        # piecewise-linear interpolation at the requested μ (alphas decrease)
        for l, m in enumerate(mu):
            if m >= alphas[0]:
                continue
            k = np.searchsorted(-alphas, -m)
            if k >= alphas.size:
                x = coefs[:, -1]
            else:
                a0, a1 = alphas[k - 1], alphas[k]
                w = (a0 - m) / (a0 - a1) if a0 > a1 else 1.0
                x = (1 - w) * coefs[:, k - 1] + w * coefs[:, k]
            out[l, i, keep] = x
    return out


def peer_sklearn_enet(C, B, excl, mus, yy, tol):
    from sklearn.linear_model import enet_path

    T = B.shape[1]
    out = np.zeros((mus.shape[1], T, C.shape[0]))
    for i in range(T):
        G, b, keep = _sub(C, B, i, excl[i])
        G = np.ascontiguousarray(G)
        X = np.zeros((1, G.shape[0]))  # only its shape is read with a precomputed Gram
        yv = np.array([np.sqrt(max(yy[i], 1e-300))])  # ‖y‖² enters the duality gap only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, coefs, _ = enet_path(
                X, yv, l1_ratio=1.0, alphas=mus[i], precompute=G, Xy=b, check_input=False, tol=tol, max_iter=100000
            )
        out[:, i, keep] = coefs.T
    return out


def peer_celer(M, n, cross_mode, tg, excl, mus, tol):
    from celer import celer_path

    ev, V = np.linalg.eigh(M)
    keep_ev = ev > ev.max() * 1e-13
    Z = (V[:, keep_ev] * np.sqrt(ev[keep_ev])).T  # (r, n [+ m]) with ZᵀZ = M
    r = Z.shape[0]
    X = np.asfortranarray(Z[:, :n])
    Y = Z[:, n:] if cross_mode else X
    T = tg.size
    out = np.zeros((mus.shape[1], T, n))
    for k in range(T):
        i = tg[k]
        keep = np.r_[0 : excl[k], excl[k] + 1 : n] if excl[k] >= 0 else np.arange(n)
        Xi = np.asfortranarray(X[:, keep])
        y = np.ascontiguousarray(Y[:, i])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, coefs, _ = celer_path(Xi, y, "lasso", alphas=mus[k] / r, tol=tol, prune=1)
        out[:, k, keep] = coefs.T
    return out


def peer_cvxpy(C, B, excl, mus, n_targets):
    import cvxpy as cp

    T = min(n_targets, B.shape[1])
    out = np.zeros((mus.shape[1], T, C.shape[0]))
    solver = None
    for i in range(T):
        G, b, keep = _sub(C, B, i, excl[i])
        t = cp.Variable(G.shape[0])
        lam = cp.Parameter(nonneg=True)
        prob = cp.Problem(cp.Minimize(cp.quad_form(t, cp.psd_wrap(G)) - 2 * b @ t + lam * cp.norm1(t)))
        for l, m in enumerate(mus[i]):
            lam.value = 2 * m
            prob.solve()
            solver = prob.solver_stats.solver_name
            out[l, i, keep] = t.value
    return out, T, solver


# ----------------------------------------------------------------------------- driver


def matmul_seconds(n, reps=15):
    """Best of `reps` n x n float64 matmuls (the minimum: on a shared machine the others
    measure the neighbours, and small products mostly the BLAS threads' wake-up)."""
    rng = np.random.default_rng(1)
    A, Bm = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    A @ Bm
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        A @ Bm
        ts.append(time.perf_counter() - t)
    return float(np.min(ts))


def worst_kkt(C, B, excl, coef, mus, lam_max):
    """Worst certificate of a peer's solutions, after zeroing roundoff-level entries
    (|t_j| <= 1e-12 max|t|; e.g. what LARS leaves of a dropped variable), which the strict
    definition would otherwise count as active with a wrong sign."""
    coef = coef.copy()
    coef[np.abs(coef) <= 1e-12 * np.abs(coef).max(axis=2, keepdims=True)] = 0.0
    worst = 0.0
    for l in range(coef.shape[0]):
        v = kkt_violation(C, coef[l], B[:, : coef.shape[1]], excl[: coef.shape[1]], 2 * mus[: coef.shape[1], l], lam_max[: coef.shape[1]])
        worst = max(worst, float(v.max()))
    return worst


def run_case(n, d, mode, kind, data, peers, args, mm):
    C, cross, gg, M = data
    rel = PATH if kind == "path" else SINGLE
    cr = cross if mode == "between" else None
    res = [solve_path(C, rel, cross=cr) for _ in range(args.repeat)]
    ours = res[0]
    tg = ours.targets
    if cr is None:
        B, excl, yy = C[:, tg], tg.copy(), np.diag(C)[tg]
    else:
        B, excl, yy = cross[:, tg], np.where(tg < n, tg, -1), gg[tg]
    mus = (0.5 * ours.lambda_abs).T.copy()  # (T, L)
    row = {
        "case": f"n={n} d={d} {mode} {kind}",
        "kmax": int(ours.n_active.max()),
        "polished": int((ours.status > 0).sum()),
    }
    for p in peers:
        t = time.perf_counter()
        if p == "sklearn":
            coef = peer_sklearn_lars(C, B, excl, mus)
            name = "sklearn-lars"
        elif p == "enet":
            coef = peer_sklearn_enet(C, B, excl, mus, yy, args.peer_tol)
            name = "sklearn-enet"
        elif p == "celer":
            coef = peer_celer(M if cr is not None else C, n, cr is not None, tg, excl, mus, args.peer_tol)
            name = "celer"
        elif p in ("homotopy", "working_set"):
            coef = solve_path(C, rel, cross=cr, method=p).coef
            name = p
        elif p == "cvxpy":
            coef, Tc, solver = peer_cvxpy(C, B, excl, mus, args.cvxpy_targets)
            el = time.perf_counter() - t
            row["cvxpy_s"] = el * tg.size / Tc
            row["cvxpy_note"] = f"{Tc} targets x{tg.size / Tc:.0f}, {solver}"
            row["cvxpy_kkt"] = worst_kkt(C, B, excl, coef, mus, ours.lambda_max)
            continue
        else:
            raise SystemExit(f"unknown peer {p}")
        row[name + "_s"] = time.perf_counter() - t
        row[name + "_kkt"] = worst_kkt(C, B, excl, coef, mus, ours.lambda_max)
    # neudep is timed `repeat` times before the peers and again after them (median of all):
    # its runs are short, the peers' long, and a short burst from a neighbour should not decide
    res += [solve_path(C, rel, cross=cr) for _ in range(args.repeat)]
    t_ours = float(np.median([r.seconds for r in res]))
    row.update(ours_s=t_ours, ours_mm=t_ours / mm, ours_kkt=max(float(r.kkt.max()) for r in res))
    return row


def fmt_row(row, peers_names):
    s = f"{row['case']:<30} {row['ours_s']:8.3f}s {row['ours_mm']:7.1f}mm  kkt {row['ours_kkt']:.1e}  kmax {row['kmax']:4d}"
    if row["polished"]:
        s += f" polished {row['polished']}"
    fastest = None
    for nm in peers_names:
        if nm + "_s" in row:
            r = row[nm + "_s"] / row["ours_s"]
            s += f" | {nm} {row[nm + '_s']:8.2f}s x{r:7.1f} kkt {row[nm + '_kkt']:.1e}"
            if nm not in ("cvxpy", "homotopy", "working_set"):
                fastest = r if fastest is None else min(fastest, r)
    if "cvxpy_note" in row:
        s += f" ({row['cvxpy_note']}, extrapolated)"
    if fastest is not None:
        s += f" || vs fastest peer x{fastest:.1f}"
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--d", type=int, nargs="+", default=[256, 768, 2048])
    ap.add_argument("--mode", nargs="+", default=["within", "between"], choices=["within", "between"])
    ap.add_argument("--kind", nargs="+", default=["single", "path"], choices=["single", "path"])
    ap.add_argument("--peers", nargs="*", default=["homotopy", "working_set", "sklearn", "enet", "celer", "cvxpy"],
                    help="sklearn (lars_path_gram), enet (sklearn enet_path), celer, cvxpy, homotopy, working_set")
    ap.add_argument("--cvxpy-targets", type=int, default=5)
    ap.add_argument("--peer-tol", type=float, default=1e-8)
    ap.add_argument("--repeat", type=int, default=3,
                    help="neudep runs before and again after the peers, per case (median of all reported)")
    ap.add_argument("--N", type=int, default=20000)
    args = ap.parse_args(argv)

    import numba

    names = {"sklearn": "sklearn-lars", "enet": "sklearn-enet", "celer": "celer", "cvxpy": "cvxpy",
             "homotopy": "homotopy", "working_set": "working_set"}
    peer_names = [names[p] for p in args.peers]
    print(f"numba threads {numba.get_num_threads()}, cpus {os.cpu_count()}; times are for all n targets;")
    print("'mm' = matmul equivalents (one n x n float64 matmul in this process); xR = peer time / neudep time")
    t = time.perf_counter()
    solve_path(np.eye(3) + 0.5, [0.5])  # load (or compile) the kernels once
    print(f"kernel load/compile: {time.perf_counter() - t:.2f}s")
    # warm the peers too (imports, their own JIT), outside any timing
    warm = make_case(20, 8, N=200)
    warm_args = argparse.Namespace(**{**vars(args), "repeat": 1, "cvxpy_targets": 1})
    run_case(20, 8, "within", "single", warm, args.peers, warm_args, 1.0)
    for n in args.n:
        mm = matmul_seconds(n)
        for d in args.d:
            data = make_case(n, d, N=args.N)
            rank = np.linalg.matrix_rank(data[0], tol=np.abs(data[0]).max() * 1e-10)
            print(f"\n== n={n} d={d}: rank(C)={rank}, one {n}x{n} matmul = {mm * 1e3:.2f} ms")
            for mode in args.mode:
                for kind in args.kind:
                    row = run_case(n, d, mode, kind, data, args.peers, args, mm)
                    print(fmt_row(row, peer_names), flush=True)


if __name__ == "__main__":
    main()
