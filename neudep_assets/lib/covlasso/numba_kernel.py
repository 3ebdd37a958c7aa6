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

_FM = {"contract", "reassoc"}  # allow FMA and vectorised reductions; no NaN/Inf shortcuts

# Relative threshold under which a new variable's Schur complement counts as zero.
SCHUR_RTOL = 1e-11
# Denominators 1 ∓ a_j below this never reach the boundary (a tie that would only move
# |c_j| − μ by ≤ DEN_EPS · μ_max over the whole path; far below any certificate tolerance).
DEN_EPS = 1e-12


# --------------------------------------------------------------------------- small linear algebra


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
def _chol_append(C, A, k, j, L, w):
    """Append variable j to the factor of C[A[:k], A[:k]]. Returns the new diagonal squared
    (the Schur complement); the caller decides whether it is large enough to commit."""
    for q in range(k):
        w[q] = C[A[q], j]
    _fwd(L, k, w, w)
    ss = 0.0
    for q in range(k):
        ss += w[q] * w[q]
    return C[j, j] - ss


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
def _cholesky(C, A, k, L):
    """Fresh factor of C[A[:k], A[:k]]; returns False when it is not positive definite."""
    for i in range(k):
        ci = A[i]
        for j in range(i + 1):
            acc = C[ci, A[j]]
            for q in range(j):
                acc -= L[i, q] * L[j, q]
            if i == j:
                if acc <= SCHUR_RTOL * C[ci, ci] or acc <= 0.0:
                    return False
                L[i, i] = np.sqrt(acc)
            else:
                L[i, j] = acc / L[j, j]
    return True


@njit(cache=True, fastmath=_FM)
def _gemv_rows(C, A, k, x, out, n):
    """out = Σ_q x[q] C[A[q], :]  (= C[:, A] x for symmetric C), four rows at a time."""
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
def _solve_refined(L, C, A, k, rhs, x, r, dx, n_refine):
    """x = C_AA⁻¹ rhs from the Cholesky factor L, then n_refine steps of iterative refinement on the
    exact C_AA (the factor has been updated many times along the path)."""
    _fwd(L, k, rhs, x)
    _bwd(L, k, x, x)
    for _ in range(n_refine):
        for q in range(k):
            acc = rhs[q]
            row = C[A[q]]
            for p in range(k):
                acc -= row[A[p]] * x[p]
            r[q] = acc
        _fwd(L, k, r, dx)
        _bwd(L, k, dx, dx)
        for q in range(k):
            x[q] += dx[q]


@njit(cache=True)
def _residual(C, b, t, idx, m, c, n):
    """c = b − C t for t supported on idx[:m]."""
    vals = np.empty(m)
    for q in range(m):
        vals[q] = t[idx[q]]
    _gemv_rows(C, idx, m, vals, c, n)
    for j in range(n):
        c[j] = b[j] - c[j]


# --------------------------------------------------------------------------- the polisher


@njit(cache=True)
def _certify(C, b, t, idx, c, excl, mu, n):
    """Residual c of t (from its support only, gathered into idx) and its absolute KKT violation."""
    m = 0
    for j in range(n):
        if t[j] != 0.0:
            idx[m] = j
            m += 1
    _residual(C, b, t, idx, m, c, n)
    return _kkt_abs(c, t, excl, mu, n)


@njit(cache=True, fastmath=_FM)
def _newton_on_support(C, b, t, mu, n, excl, work_L, out):
    """Active-set Newton: with A = supp(t), s = sign(t), solve C_AA x = b_A − μ s_A.
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
    if not _cholesky(C, A, k, L):
        return False
    rhs = np.empty(k)
    x = np.empty(k)
    r = np.empty(k)
    dx = np.empty(k)
    for q in range(k):
        rhs[q] = b[A[q]] - (mu if t[A[q]] > 0.0 else -mu)
    _solve_refined(L, C, A, k, rhs, x, r, dx, 2)
    for q in range(k):
        if x[q] * t[A[q]] <= 0.0:
            return False
        out[A[q]] = x[q]
    return True


@njit(cache=True, fastmath=_FM)
def _polish_one(C, b, excl, mu, mu0, t, tol_abs, max_outer):
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
    best = _certify(C, b, t, idx, c, excl, mu, n)
    if best <= tol_abs:
        return best
    ws = np.empty(n, np.int64)
    nws = 0
    for j in range(n):
        if j != excl and C[j, j] > 0.0 and (t[j] != 0.0 or abs(c[j]) > mu * (1.0 - 1e-9)):
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
                cjj = C[j, j]
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
                    row = C[j]
                    for q in range(nws):
                        c[ws[q]] -= row[ws[q]] * dlt
                    e = abs(dlt) * cjj
                    if e > maxd:
                        maxd = e
            if maxd <= 1e-3 * tol_abs or maxd <= 1e-15 * scale:
                break
        v = _certify(C, b, t, idx, c, excl, mu, n)
        # Newton on the support, certified independently
        if _newton_on_support(C, b, t, mu, n, excl, Lw, cand):
            v2 = _certify(C, b, cand, idx, cbuf, excl, mu, n)
            if v2 < v:
                for j in range(n):
                    t[j] = cand[j]
                    c[j] = cbuf[j]
                v = v2
        best = v
        if best <= tol_abs:
            break
        for j in range(n):  # grow the working set by the violators of the full check
            if j != excl and not inws[j] and C[j, j] > 0.0 and abs(c[j]) > mu:
                ws[nws] = j
                nws += 1
                inws[j] = True
    return best


# --------------------------------------------------------------------------- the homotopy


@njit(cache=True)
def _record(coef, nact, kkt_out, status, li, t, kkt, st, n):
    """Write the solution t at λ index li with its certificate and status."""
    cnt = 0
    for j in range(n):
        coef[li, j] = t[j]
        if t[j] != 0.0:
            cnt += 1
    nact[li] = cnt
    kkt_out[li] = kkt
    status[li] = st


@njit(cache=True)
def _support(t, idx, vals, n):
    """Gather the nonzeros of t into idx, vals; returns their number."""
    m = 0
    for j in range(n):
        if t[j] != 0.0:
            idx[m] = j
            vals[m] = t[j]
            m += 1
    return m


@njit(cache=True)
def _knot(mu, last_mu, mu0, k, A, vals, skip, kmu, kptr, kidx, kval, kcnt):
    """Append the knot (μ, {A[q]: vals[q]} for q < k, q ≠ skip, zeros left out) to the target's knot
    buffers (kptr: where each knot's nonzeros start); a knot at the μ of the previous one (a tie:
    several events at one μ) replaces it. kcnt = [knots, nonzeros, nonzeros before the last knot]
    counts on past the buffers' capacity (nothing is written there): the caller retries with more."""
    if kcnt[0] > 0 and last_mu - mu <= 1e-14 * mu0:
        kcnt[0] -= 1
        kcnt[1] = kcnt[2]
    nk = kcnt[0]
    nz = kcnt[1]
    kcnt[2] = nz
    if nk < kmu.shape[0]:
        kmu[nk] = mu
        kptr[nk] = nz
    for q in range(k):
        if q == skip or vals[q] == 0.0:
            continue
        if nz < kidx.shape[0]:
            kidx[nz] = A[q]
            kval[nz] = vals[q]
        nz += 1
    kcnt[0] = nk + 1
    kcnt[1] = nz
    return mu


@njit(cache=True, fastmath=_FM)
def _homotopy_one(C, b, excl, mus, tol_rel, max_steps, coef, nact, status, kkt_out, info,
                  rec, kmu, kptr, kidx, kval, kcnt):
    """Solve one target at every μ in ``mus`` (descending, ≥ 0).

    Writes coef[l, :] (n,), nact[l], status[l], kkt_out[l] (relative, as in covlasso) and
    info = [breakpoints, added, dropped, blocked, polished, restarts].

    With ``rec``, also the knots of the path (see :func:`_knot`): μ_max (t = 0), every μ where the
    active set changes (the coefficients there as the path carries them, the leaving class at 0), and
    the last requested μ; between two knots the solution is linear in μ. Where the polisher had to
    step in (info[4] > 0) the knots are the homotopy's and the polished points, and a segment that
    ends at a polished point is not exact."""
    n = C.shape[0]
    nl = mus.shape[0]
    c = np.empty(n)
    for j in range(n):
        c[j] = b[j]
    if excl >= 0:
        c[excl] = 0.0
    mu0 = 0.0
    for j in range(n):
        if j != excl and abs(c[j]) > mu0:
            mu0 = abs(c[j])
    tol_abs = tol_rel * mu0
    li = 0
    A = np.empty(n, np.int64)  # active variables in factor order
    last_mu = mu0
    if rec:
        last_mu = _knot(mu0, mu0, mu0, 0, A, b, -1, kmu, kptr, kidx, kval, kcnt)
    # μ ≥ μ_max: t = 0 is optimal
    while li < nl and (mus[li] >= mu0):
        for j in range(n):
            coef[li, j] = 0.0
        nact[li] = 0
        status[li] = 0
        kkt_out[li] = 0.0
        li += 1
    if li == nl:
        return

    pos = np.full(n, -1, np.int64)
    s = np.empty(n)  # sign per factor position
    tA = np.empty(n)  # coefficient per factor position
    d = np.empty(n)
    y = np.empty(n)
    ys = np.empty(n)  # L⁻¹ s_A, kept up to date on appends (one new entry)
    ys_ok = False
    w = np.empty(n)
    r1 = np.empty(n)
    r2 = np.empty(n)
    a = np.empty(n)
    tfull = np.zeros(n)
    nzi = np.empty(n, np.int64)  # knots from tfull: its support and values
    nzv = np.empty(n)
    # 0: free; 2: out for both sides (Schur complement ~ 0); ±1: a variable that just left
    # the active set from the side ±μ may not re-enter there at once (it may cross over)
    blocked = np.zeros(n, np.int8)
    L = np.empty((min(n, 64), min(n, 64)))
    k = 0
    mu = mu0
    dir_ok = False
    cd_mode = False  # the path could not be continued: warm-started polisher per μ
    last_added = -1
    steps = 0
    zero_steps = 0
    dscale = 0.0
    for j in range(n):
        if C[j, j] > dscale:
            dscale = C[j, j]
    sch_atol = 1e-14 * dscale

    while li < nl:
        target = mus[li]
        if cd_mode or steps >= max_steps:
            # fallback for the rest of the path: warm-started polisher at each μ
            if not cd_mode:
                for j in range(n):
                    tfull[j] = 0.0
                for q in range(k):
                    tfull[A[q]] = tA[q]
            cd_mode = True
            v = _polish_one(C, b, excl, target, mu0, tfull, tol_abs, 20)
            _record(coef, nact, kkt_out, status, li, tfull, v / mu0, 1 if v <= tol_abs else 2, n)
            info[4] += 1
            if rec:
                m = _support(tfull, nzi, nzv, n)
                last_mu = _knot(target, last_mu, mu0, m, nzi, nzv, -1, kmu, kptr, kidx, kval, kcnt)
            li += 1
            continue

        if not dir_ok:
            # d = C_AA⁻¹ s_A = L⁻ᵀ (L⁻¹ s_A) ;  a = C[:, A] d
            if not ys_ok:
                _fwd(L, k, s, ys)
                ys_ok = True
            _bwd(L, k, ys, d)
            _gemv_rows(C, A, k, d, a, n)
            dir_ok = True

        # next event: reach the requested μ, a variable enters, or one leaves
        dbest = mu - target
        event = 0  # 0 target, 1 add, 2 drop
        ev_j = -1
        ev_sign = 0.0
        for j in range(n):
            if pos[j] >= 0 or j == excl or blocked[j] == 2:
                continue
            aj = a[j]
            cj = c[j]
            bj = blocked[j]
            # δ = num / den < dbest  ⇔  num < dbest · den  (den > 0): divide only on a hit
            den = 1.0 - aj
            if den > DEN_EPS and bj != 1:
                num = mu - cj
                if num < dbest * den:
                    dbest = num / den if num > 0.0 else 0.0
                    event = 1
                    ev_j = j
                    ev_sign = 1.0
            den = 1.0 + aj
            if den > DEN_EPS and bj != -1:
                num = mu + cj
                if num < dbest * den:
                    dbest = num / den if num > 0.0 else 0.0
                    event = 1
                    ev_j = j
                    ev_sign = -1.0
        for q in range(k):
            dq = d[q]
            if dq * s[q] < 0.0:  # moving towards zero
                if A[q] == last_added and tA[q] == 0.0:
                    continue
                dl = -tA[q] / dq
                if dl < 0.0:
                    dl = 0.0
                if dl < dbest:
                    dbest = dl
                    event = 2
                    ev_j = q
        if dbest < 0.0:
            dbest = 0.0

        # take the step
        mu -= dbest
        if event == 0:
            mu = target
        for q in range(k):
            tA[q] += dbest * d[q]
        for j in range(n):
            c[j] -= dbest * a[j]
        steps += 1
        if dbest <= 1e-15 * mu0:
            zero_steps += 1
            if zero_steps > 4 * n + 20:
                steps = max_steps  # cycling: hand the rest to the polisher
                continue
        else:
            zero_steps = 0

        if event == 0:
            # ---- requested μ: re-solve on the factor, refine, certify
            for q in range(k):
                w[q] = b[A[q]] - mu * s[q]
            _solve_refined(L, C, A, k, w, y, r1, r2, 1)
            for j in range(n):
                tfull[j] = 0.0
            for q in range(k):
                tA[q] = y[q]
                if y[q] * s[q] > 0.0:
                    tfull[A[q]] = y[q]
            _residual(C, b, tfull, A, k, c, n)
            if excl >= 0:
                c[excl] = 0.0
            v = _kkt_abs(c, tfull, excl, mu, n)
            st = 0
            if v > tol_abs:
                v = _polish_one(C, b, excl, mu, mu0, tfull, tol_abs, 20)
                info[4] += 1
                st = 1 if v <= tol_abs else 2
                # restart the homotopy from the polished point
                k = 0
                for j in range(n):
                    pos[j] = -1
                for j in range(n):
                    if tfull[j] != 0.0:
                        A[k] = j
                        pos[j] = k
                        s[k] = 1.0 if tfull[j] > 0.0 else -1.0
                        tA[k] = tfull[j]
                        k += 1
                L = _grow(L, 0, k + 1)
                info[5] += 1
                ys_ok = False
                if not _cholesky(C, A, k, L):
                    cd_mode = True  # tfull is the state the fallback starts from
                _residual(C, b, tfull, A, k, c, n)
                if excl >= 0:
                    c[excl] = 0.0
                for j in range(n):
                    blocked[j] = 0
                last_added = -1
            _record(coef, nact, kkt_out, status, li, tfull, v / mu0, st, n)
            if rec and (st != 0 or li == nl - 1):
                m = _support(tfull, nzi, nzv, n)
                last_mu = _knot(mu, last_mu, mu0, m, nzi, nzv, -1, kmu, kptr, kidx, kval, kcnt)
            li += 1
            dir_ok = False if st != 0 else dir_ok
            # the refined tA lies on the same segment: the direction stays valid
            continue

        info[0] += 1
        if event == 1:
            j = ev_j
            L = _grow(L, k, k + 1)
            sch = _chol_append(C, A, k, j, L, w)
            if sch <= SCHUR_RTOL * C[j, j] + sch_atol:
                blocked[j] = 2  # in the span of the active set: a tie, stays out
                info[3] += 1
                continue  # same direction, j excluded
            if rec:  # the knot: the solution on the old active set (j enters at 0)
                last_mu = _knot(mu, last_mu, mu0, k, A, tA, -1, kmu, kptr, kidx, kval, kcnt)
            acc = ev_sign
            for q in range(k):
                L[k, q] = w[q]
                acc -= w[q] * ys[q]
            L[k, k] = np.sqrt(sch)
            ys[k] = acc / L[k, k]
            A[k] = j
            pos[j] = k
            s[k] = ev_sign
            tA[k] = 0.0
            c[j] = mu * ev_sign
            k += 1
            last_added = j
            info[1] += 1
            for q in range(n):
                blocked[q] = 0
        else:
            p = ev_j
            j = A[p]
            sj = s[p]
            if rec:  # the knot: the old active set's solution, without the class that leaves (at 0)
                last_mu = _knot(mu, last_mu, mu0, k, A, tA, p, kmu, kptr, kidx, kval, kcnt)
            _chol_delete(L, k, p)
            ys_ok = False
            for q in range(p, k - 1):
                A[q] = A[q + 1]
                s[q] = s[q + 1]
                tA[q] = tA[q + 1]
                pos[A[q]] = q
            k -= 1
            pos[j] = -1
            c[j] = mu * sj
            for q in range(n):
                blocked[q] = 0
            blocked[j] = 1 if sj > 0.0 else -1  # not re-added on the side it just left
            last_added = -1
            info[2] += 1
        for q in range(k):
            c[A[q]] = mu * s[q]
        dir_ok = False


@njit(cache=True, parallel=True)
def solve_many(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, nth):
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
            _solve_into(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, idx,
                        False, nok, noi, noi, nok, nocnt)


@njit(cache=True)
def _solve_into(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, idx,
                rec, kmu, kptr, kidx, kval, kcnt):
    """Target idx: the homotopy, its results written into the (L, T) outputs."""
    b = np.ascontiguousarray(B[:, idx])
    cf = np.empty((mus.shape[1], C.shape[0]))
    na = np.empty(mus.shape[1], np.int64)
    st = np.empty(mus.shape[1], np.int64)
    kk = np.empty(mus.shape[1])
    inf = np.zeros(6, np.int64)
    _homotopy_one(C, b, excl[idx], mus[idx], tol_rel, max_steps, cf, na, st, kk, inf,
                  rec, kmu, kptr, kidx, kval, kcnt)
    for l in range(mus.shape[1]):
        coef[l, idx, :] = cf[l]
        nact[l, idx] = na[l]
        status[l, idx] = st[l]
        kkt[l, idx] = kk[l]
    info[idx, :] = inf


@njit(cache=True, nogil=True)
def solve_knots(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, tlist):
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
            _solve_into(C, B, excl, mus, tol_rel, max_steps, coef, nact, status, kkt, info, tlist[i],
                        True, kmu[kp:], kst[kp:], kidx[zp:], kval[zp:], kcnt)
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
def polish_many(C, B, excl, mus, mu0, coef, tol_rel):
    """Re-polish selected problems in place (used when the independent certificate
    disagrees with the kernel's). coef: (P, n); returns the absolute violations."""
    P = coef.shape[0]
    out = np.empty(P)
    for p in range(P):
        b = np.ascontiguousarray(B[:, p])
        t = coef[p].copy()
        out[p] = _polish_one(C, b, excl[p], mus[p], mu0[p], t, tol_rel * mu0[p], 20)
        coef[p] = t
    return out


@njit(cache=True, parallel=True)
def kkt_many(C, B, excl, coef, lam_abs, lam_max, nth):
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
            for l in range(Lr):
                m = 0
                for j in range(n):
                    v = coef[l, t, j]
                    if v != 0.0:
                        idx[m] = j
                        vals[m] = v
                        m += 1
                _gemv_rows(C, idx, m, vals, g, n)
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
