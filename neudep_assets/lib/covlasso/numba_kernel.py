"""Numba kernels of the CovLasso engine (private; the public API is :mod:`covlasso`).

One problem, for one target, in the notation of ``covlasso``::

    minimise   tᵀ C t − 2 bᵀ t + 2 μ ‖t‖₁      over t ∈ Rⁿ with t[excl] = 0      (μ = λ / 2)

``C`` is the full (n, n) second moment: the target's own row and column are never read as a
source because ``excl`` never enters the active set, which avoids building Ĉ per target.
With the correlation ``c = b − C t`` the optimality (KKT) conditions are
``c_j = μ sign(t_j)`` where ``t_j ≠ 0`` and ``|c_j| ≤ μ`` elsewhere.

``_homotopy_one`` follows the exact piecewise-linear solution path from μ_max = ‖b‖_∞ down
(LARS with the lasso modification, on the Gram matrix): a Cholesky factor of C_AA is updated
at each breakpoint (a row appended when a variable enters, Givens rotations when one leaves),
and the path is stopped exactly at each requested μ. There the coefficients are re-solved
from the factor with one step of iterative refinement, ``c`` is recomputed from C (drift is
discarded) and the KKT violation is measured. A violation above the tolerance (a degenerate
active set in the rank-deficient regime, a tie, an ill-conditioned block) sends that one
problem to ``_polish_one``: coordinate descent on a working set that a full KKT check grows,
then an active-set Newton solve, certified again; the homotopy then restarts from the
polished point. Variables whose Schur complement vanishes (a column in the span of the
active ones) are never added: in exact arithmetic such a variable can only touch the
boundary |c_j| = μ as a tie, so leaving it out keeps the solution optimal; if it does not,
the certificate notices and the polisher repairs it.

Status codes (per requested μ): 0 = homotopy solution, 1 = repaired by the polisher,
2 = best effort, KKT still above tolerance (reported, never hidden).
"""


from __future__ import annotations

import numpy as np
from numba import njit, prange

from neudep_assets.lib.covlasso.numba_linalg import _gemv_rows, _polish_one, SCHUR_RTOL, DEN_EPS  # noqa: F401
from neudep_assets.lib.covlasso.numba_homotopy import _homotopy_one  # noqa: F401

# V, kap (every kernel below): the per-target correction of the centered gauge (covlasso.gauge): target idx
# is solved on Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ with v = V[:, idx], κ = kap[idx], applied where the kernels read C
# (numba_linalg), never formed; V of shape (0, T): the raw gauge, C itself. Each v is passed on as a
# contiguous copy (O(n)), so that the inner functions are compiled once for both gauges.


@njit(cache=True, parallel=True)
def solve_many(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, V, kap, nth):
    """All targets, in parallel over targets (interleaved over threads for balance).

    B: (n, T) right-hand sides; excl: (T,) excluded index or -1; mus: (T, L) descending;
    coef: (L, T, n); nact, status, kkt: (L, T); info: (T, 6); nth: numba.get_num_threads()."""
    T = B.shape[1]
    if nth > T:
        nth = max(T, 1)
    for wkr in prange(nth):
        nok = np.empty(0)
        noi = np.empty(0, np.int64)
        nocnt = np.zeros(3, np.int64)
        for idx in range(wkr, T, nth):
            v = np.ascontiguousarray(V[:, idx])
            _solve_into(C, v, kap[idx], B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info,
                        idx, False, nok, noi, noi, nok, nocnt)


@njit(cache=True)
def _solve_into(C, v, kap, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, idx,
                rec, kmu, kptr, kidx, kval, kcnt):
    """Target idx: the homotopy, its results written into the (L, T) outputs."""
    b = np.ascontiguousarray(B[:, idx])
    cf = np.empty((mus.shape[1], C.shape[0]))
    na = np.empty(mus.shape[1], np.int64)
    st = np.empty(mus.shape[1], np.int64)
    kk = np.empty(mus.shape[1])
    inf = np.zeros(6, np.int64)
    _homotopy_one(C, v, kap, b, excl[idx], mus[idx], tol_rel, max_steps, cf, na, st, kk, inf,
                  rec, kmu, kptr, kidx, kval, kcnt)
    for l in range(mus.shape[1]):
        coef[l, idx, :] = cf[l]
        nact[l, idx] = na[l]
        status[l, idx] = st[l]
        kkt[l, idx] = kk[l]
    info[idx, :] = inf


@njit(cache=True, nogil=True)
def solve_knots(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, V, kap, tlist):
    """The targets ``tlist`` one after the other (one thread: the caller runs several on disjoint lists),
    as :func:`solve_many`, and the knots of each path (see :func:`_homotopy_one`).

    The knots are a variable-length output: they go into buffers that grow (doubling) and always
    keep twice the largest target's need free; a target that still overflows them is solved again
    after they grew (rare). Returns (kmu, kstart, kidx, kval, counts): the knots' μ and the start of
    their nonzeros (relative to their target's first), the nonzeros, and counts (len(tlist), 2) of
    knots and nonzeros per target, targets concatenated in tlist order. Memory O(nonzeros along the paths)."""
    kmu = np.empty(256)
    kst = np.empty(257, np.int64)
    kidx = np.empty(4096, np.int64)
    kval = np.empty(4096)
    counts = np.zeros((tlist.size, 2), np.int64)
    kcnt = np.zeros(3, np.int64)
    kp = 0
    zp = 0
    need_k = 64
    need_z = 1024
    for i in range(tlist.size):
        while True:
            if kp + 2 * need_k > kmu.size:
                cap = max(2 * kmu.size, kp + 2 * need_k)
                k2 = np.empty(cap)
                s2 = np.empty(cap + 1, np.int64)
                k2[:kp] = kmu[:kp]
                s2[:kp] = kst[:kp]
                kmu = k2
                kst = s2
            if zp + 2 * need_z > kidx.size:
                cap = max(2 * kidx.size, zp + 2 * need_z)
                i2 = np.empty(cap, np.int64)
                v2 = np.empty(cap)
                i2[:zp] = kidx[:zp]
                v2[:zp] = kval[:zp]
                kidx = i2
                kval = v2
            kcnt[:] = 0
            v = np.ascontiguousarray(V[:, tlist[i]])
            _solve_into(C, v, kap[tlist[i]], B, excl, mus, tol_rel, max_steps, coef, nact, status,
                        kkt, info, tlist[i], True, kmu[kp:], kst[kp:], kidx[zp:], kval[zp:], kcnt)
            need_k = max(need_k, kcnt[0])
            need_z = max(need_z, kcnt[1])
            if kcnt[0] <= kmu.size - kp and kcnt[1] <= kidx.size - zp:
                break
        counts[i, 0] = kcnt[0]
        counts[i, 1] = kcnt[1]
        kp += kcnt[0]
        zp += kcnt[1]
    return kmu[:kp].copy(), kst[:kp].copy(), kidx[:zp].copy(), kval[:zp].copy(), counts


@njit(cache=True)
def polish_many(C, B, excl, mus, mu0, coef, tol_rel, V, kap):
    """Re-polish selected problems in place (used when the independent certificate
    disagrees with the kernel's). coef: (P, n); V (n, P) / kap (P,) per problem; returns the absolute
    violations."""
    P = coef.shape[0]
    out = np.empty(P)
    for p in range(P):
        b = np.ascontiguousarray(B[:, p])
        t = coef[p].copy()
        v = np.ascontiguousarray(V[:, p])
        out[p] = _polish_one(C, v, kap[p], b, excl[p], mus[p], mu0[p], t, tol_rel * mu0[p], 20)
        coef[p] = t
    return out


@njit(cache=True, parallel=True)
def kkt_many(C, B, excl, coef, lam_abs, lam_max, V, kap, nth):
    """The certificate of covlasso, computed from C and coef alone (independent of the solver's
    state), exploiting the sparsity of coef: O(n · nnz) per solution.

    coef: (L, T, n); B: (n, T); excl: (T,); lam_abs: (L, T); lam_max: (T,). Returns (L, T)."""
    Lr = coef.shape[0]
    T = coef.shape[1]
    n = C.shape[0]
    out = np.empty((Lr, T))
    if nth > T:
        nth = max(T, 1)
    for wkr in prange(nth):
        idx = np.empty(n, np.int64)
        g = np.empty(n)
        vals = np.empty(n)
        for t in range(wkr, T, nth):
            den = lam_max[t] if lam_max[t] > 0.0 else 1.0
            vt = np.ascontiguousarray(V[:, t])
            for l in range(Lr):
                m = 0
                for j in range(n):
                    v = coef[l, t, j]
                    if v != 0.0:
                        idx[m] = j
                        vals[m] = v
                        m += 1
                _gemv_rows(C, vt, kap[t], idx, m, vals, g, n)
                lam = lam_abs[l, t]
                worst = 0.0
                for j in range(n):
                    if j == excl[t]:
                        continue
                    gj = 2.0 * (g[j] - B[j, t])
                    v = coef[l, t, j]
                    if v > 0.0:
                        e = abs(gj + lam)
                    elif v < 0.0:
                        e = abs(gj - lam)
                    else:
                        e = abs(gj) - lam
                    if e > worst:
                        worst = e
                out[l, t] = worst / den
    return out
