"""The exact homotopy of one target (LARS-lasso on the Gram), with its records and path knots; see
numba_kernel.py for the algorithm."""

from __future__ import annotations

import numpy as np
from numba import njit

from neudep_assets.lib.covlasso.numba_linalg import (_FM, SCHUR_RTOL, DEN_EPS, _at, _fwd, _bwd, _grow,  # noqa: F401
    _chol_append, _chol_delete, _cholesky, _gemv_rows, _kkt_abs, _solve_refined, _residual, _polish_one)


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
def _homotopy_one(C, v, kap, b, excl, mus, tol_rel, max_steps, coef, nact, status, kkt_out, info,
                  rec, kmu, kptr, kidx, kval, kcnt):
    """Solve one target at every μ in ``mus`` (descending, ≥ 0), on Ĉ = (C, v, kap) (numba_linalg).

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
        cjj = _at(C, v, kap, j, j)
        if cjj > dscale:
            dscale = cjj
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
            viol = _polish_one(C, v, kap, b, excl, target, mu0, tfull, tol_abs, 20)
            _record(coef, nact, kkt_out, status, li, tfull, viol / mu0, 1 if viol <= tol_abs else 2, n)
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
            _gemv_rows(C, v, kap, A, k, d, a, n)
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
            _solve_refined(L, C, v, kap, A, k, w, y, r1, r2, 1)
            for j in range(n):
                tfull[j] = 0.0
            for q in range(k):
                tA[q] = y[q]
                if y[q] * s[q] > 0.0:
                    tfull[A[q]] = y[q]
            _residual(C, v, kap, b, tfull, A, k, c, n)
            if excl >= 0:
                c[excl] = 0.0
            viol = _kkt_abs(c, tfull, excl, mu, n)
            st = 0
            if viol > tol_abs:
                viol = _polish_one(C, v, kap, b, excl, mu, mu0, tfull, tol_abs, 20)
                info[4] += 1
                st = 1 if viol <= tol_abs else 2
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
                if not _cholesky(C, v, kap, A, k, L):
                    cd_mode = True  # tfull is the state the fallback starts from
                _residual(C, v, kap, b, tfull, A, k, c, n)
                if excl >= 0:
                    c[excl] = 0.0
                for j in range(n):
                    blocked[j] = 0
                last_added = -1
            _record(coef, nact, kkt_out, status, li, tfull, viol / mu0, st, n)
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
            sch = _chol_append(C, v, kap, A, k, j, L, w)
            if sch <= SCHUR_RTOL * _at(C, v, kap, j, j) + sch_atol:
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
