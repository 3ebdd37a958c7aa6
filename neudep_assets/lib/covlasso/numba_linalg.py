"""The CovLasso kernel's small linear algebra (Cholesky of the active block, refined solves, residuals,
certificates, the Newton polish on a support); see numba_kernel.py for the algorithm.

Every function that reads the moment takes it as ``(C, v, kap)``: the matrix is Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ,
the centered gauge's per-target correction (:mod:`covlasso.gauge`), applied where an entry or a product is
read, so no n × n matrix is formed per target; ``v`` of length 0 means C itself (the raw gauge)."""

from __future__ import annotations

import numpy as np
from numba import njit

_FM = {"contract", "reassoc"}  # allow FMA and vectorised reductions; no NaN/Inf shortcuts

# Relative threshold under which a new variable's Schur complement counts as zero.
SCHUR_RTOL = 1e-11
# Denominators 1 ∓ a_j below this never reach the boundary (a tie that would only move
# |c_j| − μ by ≤ DEN_EPS · μ_max over the whole path; far below any certificate tolerance).
DEN_EPS = 1e-12


# --------------------------------------------------------------------------- small linear algebra


@njit(cache=True)
def _at(C, v, kap, i, j):
    """Ĉ[i, j] (C[i, j] when v is empty); (v_i + v_j) first, so that Ĉ is exactly symmetric."""
    if v.shape[0] == 0:
        return C[i, j]
    return (C[i, j] + (v[i] + v[j])) + kap


@njit(cache=True, fastmath=_FM)
def _fwd(L, k, rhs, out):
    """Solve L[:k,:k] out = rhs (L lower triangular, row-major)."""
    for i in range(k):
        acc = rhs[i]
        for j in range(i):
            acc -= L[i, j] * out[j]
        out[i] = acc / L[i, i]


@njit(cache=True, fastmath=_FM)
def _bwd(L, k, y, out):
    """Solve L[:k,:k]ᵀ out = y, column-oriented so that L is read by rows."""
    for i in range(k):
        out[i] = y[i]
    for i in range(k - 1, -1, -1):
        v = out[i] / L[i, i]
        out[i] = v
        for j in range(i):
            out[j] -= v * L[i, j]


@njit(cache=True)
def _grow(L, k, need):
    if need <= L.shape[0]:
        return L
    cap = max(need, 2 * L.shape[0])
    L2 = np.empty((cap, cap))
    for i in range(k):
        for j in range(i + 1):
            L2[i, j] = L[i, j]
    return L2


@njit(cache=True, fastmath=_FM)
def _chol_append(C, v, kap, A, k, j, L, w):
    """Append variable j to the factor of Ĉ[A[:k], A[:k]]. Returns the new diagonal squared
    (the Schur complement); the caller decides whether it is large enough to commit."""
    for q in range(k):
        w[q] = _at(C, v, kap, A[q], j)
    _fwd(L, k, w, w)
    ss = 0.0
    for q in range(k):
        ss += w[q] * w[q]
    return _at(C, v, kap, j, j) - ss


@njit(cache=True)
def _chol_delete(L, k, p):
    """Remove row/column p from a k×k factor (Givens rotations), in place."""
    for r in range(p + 1, k):
        for j in range(r + 1):
            L[r - 1, j] = L[r, j]
    for j in range(p, k - 1):
        a = L[j, j]
        bb = L[j, j + 1]
        r = np.hypot(a, bb)
        if r == 0.0:
            continue
        cs = a / r
        sn = bb / r
        for i in range(j, k - 1):
            x = L[i, j]
            y = L[i, j + 1]
            L[i, j] = cs * x + sn * y
            L[i, j + 1] = -sn * x + cs * y
        L[j, j + 1] = 0.0
    for j in range(k - 1):
        if L[j, j] < 0.0:  # keep a positive diagonal
            for i in range(j, k - 1):
                L[i, j] = -L[i, j]


@njit(cache=True, fastmath=_FM)
def _cholesky(C, v, kap, A, k, L):
    """Fresh factor of Ĉ[A[:k], A[:k]]; returns False when it is not positive definite."""
    for i in range(k):
        ci = A[i]
        for j in range(i + 1):
            acc = _at(C, v, kap, ci, A[j])
            for q in range(j):
                acc -= L[i, q] * L[j, q]
            if i == j:
                if acc <= SCHUR_RTOL * _at(C, v, kap, ci, ci) or acc <= 0.0:
                    return False
                L[i, i] = np.sqrt(acc)
            else:
                L[i, j] = acc / L[j, j]
    return True


@njit(cache=True, fastmath=_FM)
def _gemv_rows(C, v, kap, A, k, x, out, n):
    """out = Σ_q x[q] Ĉ[A[q], :]  (= Ĉ[:, A] x for symmetric Ĉ), four rows of C at a time, then the
    correction: + v·Σx + (Σ x_q v[A_q] + κ·Σx)·1."""
    for j in range(n):
        out[j] = 0.0
    q = 0
    while q + 4 <= k:
        r0 = C[A[q]]
        r1 = C[A[q + 1]]
        r2 = C[A[q + 2]]
        r3 = C[A[q + 3]]
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        x3 = x[q + 3]
        for j in range(n):
            out[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j]
        q += 4
    while q < k:
        r0 = C[A[q]]
        x0 = x[q]
        for j in range(n):
            out[j] += x0 * r0[j]
        q += 1
    if v.shape[0] > 0:
        sx = 0.0
        sv = 0.0
        for q in range(k):
            sx += x[q]
            sv += x[q] * v[A[q]]
        cst = sv + kap * sx
        for j in range(n):
            out[j] += v[j] * sx + cst


@njit(cache=True)
def _kkt_abs(c, t, excl, mu, n):
    """max_j of |c_j − μ sign(t_j)| (t_j ≠ 0) or max(0, |c_j| − μ) (t_j = 0), j ≠ excl."""
    v = 0.0
    for j in range(n):
        if j == excl:
            continue
        tj = t[j]
        if tj > 0.0:
            e = abs(c[j] - mu)
        elif tj < 0.0:
            e = abs(c[j] + mu)
        else:
            e = abs(c[j]) - mu
        if e > v:
            v = e
    return v


@njit(cache=True, fastmath=_FM)
def _solve_refined(L, C, v, kap, A, k, rhs, x, r, dx, n_refine):
    """x = Ĉ_AA⁻¹ rhs from the Cholesky factor L, then n_refine steps of iterative refinement on the
    exact Ĉ_AA (the factor has been updated many times along the path)."""
    _fwd(L, k, rhs, x)
    _bwd(L, k, x, x)
    for _ in range(n_refine):
        sx = 0.0
        sv = 0.0
        if v.shape[0] > 0:
            for p in range(k):
                sx += x[p]
                sv += v[A[p]] * x[p]
        for q in range(k):
            acc = rhs[q]
            row = C[A[q]]
            for p in range(k):
                acc -= row[A[p]] * x[p]
            if v.shape[0] > 0:
                acc -= (v[A[q]] + kap) * sx + sv
            r[q] = acc
        _fwd(L, k, r, dx)
        _bwd(L, k, dx, dx)
        for q in range(k):
            x[q] += dx[q]


@njit(cache=True)
def _residual(C, v, kap, b, t, idx, m, c, n):
    """c = b − Ĉ t for t supported on idx[:m]."""
    vals = np.empty(m)
    for q in range(m):
        vals[q] = t[idx[q]]
    _gemv_rows(C, v, kap, idx, m, vals, c, n)
    for j in range(n):
        c[j] = b[j] - c[j]


# --------------------------------------------------------------------------- the polisher


@njit(cache=True)
def _certify(C, v, kap, b, t, idx, c, excl, mu, n):
    """Residual c of t (from its support only, gathered into idx) and its absolute KKT violation."""
    m = 0
    for j in range(n):
        if t[j] != 0.0:
            idx[m] = j
            m += 1
    _residual(C, v, kap, b, t, idx, m, c, n)
    return _kkt_abs(c, t, excl, mu, n)


@njit(cache=True, fastmath=_FM)
def _newton_on_support(C, v, kap, b, t, mu, n, excl, work_L, out):
    """Active-set Newton: with A = supp(t), s = sign(t), solve Ĉ_AA x = b_A − μ s_A.
    Returns False if C_AA is singular or the solution changes a sign."""
    A = np.empty(n, np.int64)
    k = 0
    for j in range(n):
        if t[j] != 0.0 and j != excl:
            A[k] = j
            k += 1
    for j in range(n):
        out[j] = 0.0
    if k == 0:
        return True
    L = work_L
    if L.shape[0] < k:
        L = np.empty((k, k))
    if not _cholesky(C, v, kap, A, k, L):
        return False
    rhs = np.empty(k)
    x = np.empty(k)
    r = np.empty(k)
    dx = np.empty(k)
    for q in range(k):
        rhs[q] = b[A[q]] - (mu if t[A[q]] > 0.0 else -mu)
    _solve_refined(L, C, v, kap, A, k, rhs, x, r, dx, 2)
    for q in range(k):
        if x[q] * t[A[q]] <= 0.0:
            return False
        out[A[q]] = x[q]
    return True


@njit(cache=True, fastmath=_FM)
def _polish_one(C, v, kap, b, excl, mu, mu0, t, tol_abs, max_outer):
    """Make t optimal at μ (in place) and return its absolute KKT violation.

    Working-set coordinate descent alternated with an active-set Newton solve on the support
    found. The working set is seeded by the support and the basic KKT test |c_j| ≥ μ at the
    starting point (at t = 0 that is Conjecture 1's rule, which is not safe on its own) and is
    grown by a full KKT check after each round; each candidate is certified with c recomputed
    from C. Bounded work: ``max_outer`` rounds of at most 500 sweeps."""
    n = C.shape[0]
    c = np.empty(n)
    idx = np.empty(n, np.int64)
    inws = np.zeros(n, np.bool_)
    cand = np.empty(n)
    cbuf = np.empty(n)
    Lw = np.empty((1, 1))
    best = _certify(C, v, kap, b, t, idx, c, excl, mu, n)
    if best <= tol_abs:
        return best
    ws = np.empty(n, np.int64)
    nws = 0
    for j in range(n):
        if j != excl and _at(C, v, kap, j, j) > 0.0 and (t[j] != 0.0 or abs(c[j]) > mu * (1.0 - 1e-9)):
            ws[nws] = j
            nws += 1
            inws[j] = True
    for outer in range(max_outer):
        # coordinate descent restricted to the working set; c kept exact on ws only
        scale = mu0 if mu0 > 0.0 else 1.0
        for ep in range(500):
            maxd = 0.0
            for p in range(nws):
                j = ws[p]
                cjj = _at(C, v, kap, j, j)
                z = c[j] + cjj * t[j]
                if z > mu:
                    tn = (z - mu) / cjj
                elif z < -mu:
                    tn = (z + mu) / cjj
                else:
                    tn = 0.0
                dlt = tn - t[j]
                if dlt != 0.0:
                    t[j] = tn
                    for q in range(nws):
                        c[ws[q]] -= _at(C, v, kap, j, ws[q]) * dlt
                    e = abs(dlt) * cjj
                    if e > maxd:
                        maxd = e
            if maxd <= 1e-3 * tol_abs or maxd <= 1e-15 * scale:
                break
        viol = _certify(C, v, kap, b, t, idx, c, excl, mu, n)
        # Newton on the support, certified independently
        if _newton_on_support(C, v, kap, b, t, mu, n, excl, Lw, cand):
            v2 = _certify(C, v, kap, b, cand, idx, cbuf, excl, mu, n)
            if v2 < viol:
                for j in range(n):
                    t[j] = cand[j]
                    c[j] = cbuf[j]
                viol = v2
        best = viol
        if best <= tol_abs:
            break
        for j in range(n):  # grow the working set by the violators of the full check
            if j != excl and not inws[j] and _at(C, v, kap, j, j) > 0.0 and abs(c[j]) > mu:
                ws[nws] = j
                nws += 1
                inws[j] = True
    return best


# --------------------------------------------------------------------------- the homotopy
