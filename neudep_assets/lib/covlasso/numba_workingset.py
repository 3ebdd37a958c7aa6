"""The working-set homotopy: the exact homotopy of :mod:`numba_homotopy` on a growing set of candidate
sources, certified on all of them (private; used by ``covlasso.solve_path(method="working_set")``).

A homotopy step costs O(n·k) (the correlations of all n classes move with the k active ones), so a
target costs ≈ n·k² and a whole model ≈ n²·k²: at n = 21,841 that is hours. Only the sources that
end up active matter, and they are few. So each target is solved on a working set W of m sources
(first the m with the largest |b_j|, as the path starts from them), by the same homotopy on the
gathered block C_WW (m², in cache); the solution at every requested μ is then checked against *all*
sources with c = b − C t from the full C (O(n·k)). Sources that violate it (|c_j| > μ + tol) join W
(the worst first, at most as many as W holds: W at most doubles per round, and never beyond the cap)
and the block is solved again. When no source violates the conditions the solution is the full problem's, certified as the
homotopy's is. A working set that would outgrow ``max_ws`` (or half the classes), and any solution
the check does not certify, falls back to the plain homotopy on the full C: nothing is left uncertified
that the homotopy would certify.

The path between the requested μ is the block's, not necessarily the full problem's (a source outside
W may have touched the boundary in between and left again), which is why the exact path (knots) is
always walked by the full homotopy.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neudep_assets.lib.covlasso.numba_homotopy import _homotopy_one
from neudep_assets.lib.covlasso.numba_linalg import _at, _kkt_abs, _residual


@njit(cache=True)
def _full_check(C, v, kap, b, excl, W, m, cf, mus, tol_abs, c, t, idx, worst, n):
    """The full KKT check of the block's solutions cf (L, m): worst[j] = max over the μ of |c_j| − μ
    (> tol_abs outside W: a violation); returns (L,) absolute KKT."""
    nl = mus.shape[0]
    out = np.empty(nl)
    for j in range(n):
        worst[j] = -np.inf
    for l in range(nl):
        k = 0
        for q in range(m):
            if cf[l, q] != 0.0:
                t[W[q]] = cf[l, q]
                idx[k] = W[q]
                k += 1
        _residual(C, v, kap, b, t, idx, k, c, n)
        out[l] = _kkt_abs(c, t, excl, mus[l], n)
        for q in range(k):
            t[idx[q]] = 0.0
        for j in range(n):
            e = abs(c[j]) - mus[l]
            if e > worst[j]:
                worst[j] = e
    return out


@njit(cache=True)
def working_set_one(C, v, kap, b, excl, mus, tol_rel, m0, max_ws, coef, nact, status, kkt_out, info, ws_info):
    """One target at every μ in ``mus`` (descending), on Ĉ = (C, v, kap) (numba_linalg); outputs as
    :func:`numba_homotopy._homotopy_one` (coef (L, n), nact, status, kkt_out (L,), info (6,)), and ws_info (2,)
    = [rounds beyond the first, 1 if the full homotopy decided]."""
    n = C.shape[0]
    nl = mus.shape[0]
    absb = np.empty(n)
    for j in range(n):
        absb[j] = abs(b[j]) if j != excl else -1.0
    order = np.argsort(-absb)
    n_cand = n - 1 if excl >= 0 else n
    mu0 = absb[order[0]] if n_cand > 0 else 0.0
    tol_abs = tol_rel * mu0
    cap = min(max_ws, n_cand // 2)
    m = min(m0, n_cand)
    W = np.empty(n, np.int64)
    inw = np.zeros(n, np.bool_)
    for q in range(m):
        W[q] = order[q]
        inw[order[q]] = True
    c = np.empty(n)
    t = np.zeros(n)
    idx = np.empty(n, np.int64)
    worst = np.empty(n)
    nok = np.empty(0)
    noi = np.empty(0, np.int64)
    nocnt = np.zeros(3, np.int64)
    rounds = 0
    while m <= cap and mu0 > 0.0:
        Ws = np.sort(W[:m])  # rows of C in memory order
        W[:m] = Ws
        Cw = np.empty((m, m))
        bw = np.empty(m)
        for p in range(m):
            for q in range(m):
                Cw[p, q] = _at(C, v, kap, Ws[p], Ws[q])
            bw[p] = b[Ws[p]]
        cf = np.empty((nl, m))
        na = np.empty(nl, np.int64)
        st = np.empty(nl, np.int64)
        kk = np.empty(nl)
        inf = np.zeros(6, np.int64)
        _homotopy_one(Cw, v[:0], 0.0, bw, -1, mus, tol_rel, 10 * m + 1000, cf, na, st, kk, inf,
                      False, nok, noi, noi, nok, nocnt)
        full = _full_check(C, v, kap, b, excl, W, m, cf, mus, tol_abs, c, t, idx, worst, n)
        nv = 0
        nout = 0
        for j in range(n):
            if not inw[j] and j != excl:
                idx[nout] = j
                nout += 1
                if worst[j] > tol_abs:
                    nv += 1
        if nv == 0:
            ok = True
            for l in range(nl):
                if full[l] > tol_abs:
                    ok = False
            if not ok:
                break  # uncertified on the block: the full homotopy decides
            for l in range(nl):
                for j in range(n):
                    coef[l, j] = 0.0
                for q in range(m):
                    coef[l, W[q]] = cf[l, q]
                nact[l] = na[l]
                status[l] = st[l]
                kkt_out[l] = full[l] / mu0
            for i in range(6):
                info[i] = inf[i]
            ws_info[0] = rounds
            ws_info[1] = 0
            return
        # W doubles: the violators join, with the sources nearest to violating (|c_j| − μ largest),
        # which the path is likely to need next (adding only the violators costs many more rounds)
        vals = np.empty(nout)
        for p in range(nout):
            vals[p] = -worst[idx[p]]
        sel = np.argsort(vals)
        add = min(nout, max(m, 32), cap - m)
        if add <= 0:
            break
        for p in range(add):
            j = idx[sel[p]]
            W[m + p] = j
            inw[j] = True
        m += add
        rounds += 1
    _homotopy_one(C, v, kap, b, excl, mus, tol_rel, 10 * n + 1000, coef, nact, status, kkt_out, info,
                  False, nok, noi, noi, nok, nocnt)
    ws_info[0] = rounds
    ws_info[1] = 1


@njit(cache=True, parallel=True)
def solve_many_ws(C, B, excl, mus, tol_rel, m0, max_ws, coef, nact, status, kkt, info, ws_info, V, kap, nth):
    """All targets by the working-set homotopy, in parallel over targets (interleaved over threads);
    arguments as :func:`numba_kernel.solve_many` (V, kap: the centered gauge's correction), plus ws_info
    (T, 2) of :func:`working_set_one`."""
    T = B.shape[1]
    L = mus.shape[1]
    n = C.shape[0]
    if nth > T:
        nth = max(T, 1)
    for wkr in prange(nth):
        cf = np.empty((L, n))
        na = np.empty(L, np.int64)
        st = np.empty(L, np.int64)
        kk = np.empty(L)
        inf = np.zeros(6, np.int64)
        wsi = np.zeros(2, np.int64)
        for i in range(wkr, T, nth):
            b = np.ascontiguousarray(B[:, i])
            inf[:] = 0
            v = np.ascontiguousarray(V[:, i])
            working_set_one(C, v, kap[i], b, excl[i], mus[i], tol_rel, m0, max_ws, cf, na, st, kk, inf, wsi)
            for l in range(L):
                coef[l, i, :] = cf[l]
                nact[l, i] = na[l]
                status[l, i] = st[l]
                kkt[l, i] = kk[l]
            info[i, :] = inf
            ws_info[i, :] = wsi
