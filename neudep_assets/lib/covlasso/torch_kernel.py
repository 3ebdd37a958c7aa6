"""Batched torch homotopy for CovLasso (private; used by ``covlasso.solve_path(device="cuda")``).

The same exact homotopy as the numba kernel, run in lockstep over a batch of targets so that the
work is a few large tensor operations per breakpoint (meant for GPUs and n in the thousands):
each step re-factors the padded active blocks of the whole batch (``cholesky_ex``), forms the
direction of every target, and gets all correlation updates from one product D·C. Each target
moves to its own next event (a class enters, one leaves, or its next requested λ); targets that
are done idle. Solutions are re-solved and certified at every requested λ; a target whose
certificate fails, or that exceeds the step budget, is flagged and re-solved by the numba path.

The centered gauge's per-target Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ (covlasso.gauge) is applied where C is read
(:func:`_times`, the gathered blocks), as in the numba kernels: C itself is shared by the whole batch.
"""

from __future__ import annotations

import numpy as np

from neudep_assets.lib.covlasso.numba_kernel import DEN_EPS, SCHUR_RTOL


def solve_many_torch(C_np, B_np, excl_np, mus_np, tol, device, V=None, kap=None, batch=None):
    """Returns coef (L, T, n), status (L, T), breakpoints (T,), need_cpu (T,) bool. V (n, T), kap (T,): the
    centered gauge's correction (None or V of shape (0, T): the raw gauge)."""
    import torch

    dev = torch.device(device)
    n = C_np.shape[0]
    T, Ls = mus_np.shape
    if batch is None:
        budget = 2.0e9 if dev.type == "cuda" else 2.0e8  # bytes for per-batch work arrays
        batch = int(max(1, min(T, 1024, budget // (8 * (14 * n + min(n, 512) ** 2)))))
    C = torch.as_tensor(C_np, dtype=torch.float64, device=dev)
    diagC = torch.diagonal(C)
    sch_atol = 1e-14 * float(diagC.max())
    coef = np.zeros((Ls, T, n))
    status = np.zeros((Ls, T), np.int64)
    bps = np.zeros(T, np.int64)
    need_cpu = np.zeros(T, bool)
    centered = V is not None and V.shape[0] > 0
    for s0 in range(0, T, batch):
        s1 = min(T, s0 + batch)
        corr = None
        if centered:
            corr = (torch.as_tensor(np.ascontiguousarray(V[:, s0:s1].T), dtype=torch.float64, device=dev),
                    torch.as_tensor(np.ascontiguousarray(kap[s0:s1]), dtype=torch.float64, device=dev))
        out = _batch(C, diagC, B_np[:, s0:s1].T, excl_np[s0:s1], mus_np[s0:s1], tol, sch_atol, dev, 10 * n + 1000,
                     corr)
        coef[:, s0:s1], status[:, s0:s1], bps[s0:s1], need_cpu[s0:s1] = out
    return coef, status, bps, need_cpu


def _times(X, C, corr):
    """X Ĉ for a batch of rows X (Bt, n), each with its target's Ĉ: X C + (X1)vᵀ + (Xv + κ X1)1ᵀ."""
    out = X @ C
    if corr is not None:
        v, kap = corr
        sx = X.sum(dim=1)
        out = out + sx[:, None] * v + ((X * v).sum(dim=1) + kap * sx)[:, None]
    return out


def _batch(C, diagC, b_np, excl_np, mus_np, tol, sch_atol, dev, max_steps, corr=None):
    import torch

    f64 = torch.float64
    Bt, n = b_np.shape
    Ls = mus_np.shape[1]
    rows = torch.arange(Bt, device=dev)
    b = torch.as_tensor(np.ascontiguousarray(b_np), dtype=f64, device=dev)
    excl = torch.as_tensor(excl_np, device=dev)
    allowed = torch.ones(Bt, n, dtype=torch.bool, device=dev)
    has_ex = excl >= 0
    allowed[rows[has_ex], excl[has_ex]] = False
    mus = torch.as_tensor(np.ascontiguousarray(mus_np), dtype=f64, device=dev)
    c = torch.where(allowed, b, torch.zeros((), dtype=f64, device=dev))
    mu0 = c.abs().max(dim=1).values
    mu = mu0.clone()
    li = (mus >= mu0[:, None]).sum(dim=1)  # μ ≥ μ_max: t = 0 (already zero in the output)
    active = torch.zeros(Bt, n, dtype=torch.bool, device=dev)
    sgn = torch.zeros(Bt, n, dtype=f64, device=dev)
    t = torch.zeros(Bt, n, dtype=f64, device=dev)
    blocked = torch.zeros(Bt, n, dtype=torch.int8, device=dev)
    last_added = torch.full((Bt,), -1, dtype=torch.long, device=dev)
    steps = torch.zeros(Bt, dtype=torch.long, device=dev)
    bad = torch.zeros(Bt, dtype=torch.bool, device=dev)
    coef = torch.zeros(Ls, Bt, n, dtype=f64, device=dev)
    status = torch.zeros(Ls, Bt, dtype=torch.long, device=dev)
    inf = torch.tensor(float("inf"), dtype=f64, device=dev)
    tol_abs = tol * mu0

    while True:
        run = (li < Ls) & ~bad
        if not bool(run.any()):
            break
        # padded active sets, their factors, directions d and correlation slopes a = C d
        k = active.sum(dim=1)
        kmax = max(int(k.max()), 1)
        idx = torch.argsort(active.to(torch.int8), dim=1, descending=True, stable=True)[:, :kmax]
        valid = torch.arange(kmax, device=dev)[None, :] < k[:, None]
        G = C[idx[:, :, None], idx[:, None, :]]
        if corr is not None:
            vA = corr[0].gather(1, idx)
            G = G + (vA[:, :, None] + vA[:, None, :]) + corr[1][:, None, None]
        vv = valid[:, :, None] & valid[:, None, :]
        eye = torch.eye(kmax, dtype=f64, device=dev).expand(Bt, kmax, kmax)
        G = torch.where(vv, G, eye)
        Lc, info = torch.linalg.cholesky_ex(G)
        bad |= (info > 0) & run
        Lc = torch.where((info > 0)[:, None, None], eye, Lc)
        sA = sgn.gather(1, idx) * valid
        dA = torch.cholesky_solve(sA[..., None], Lc)[..., 0] * valid
        D = torch.zeros(Bt, n, dtype=f64, device=dev).scatter_(1, idx, dA)
        a = _times(D, C, corr)

        # next event of every target
        tgt = mus.gather(1, li.clamp(max=Ls - 1)[:, None])[:, 0]
        d_tg = torch.where(run, mu - tgt, inf)
        cand = allowed & ~active & (blocked != 2) & run[:, None]
        den = 1.0 - a
        dp = torch.where(cand & (den > DEN_EPS) & (blocked != 1), (mu[:, None] - c).clamp(min=0) / den, inf)
        den = 1.0 + a
        dm = torch.where(cand & (den > DEN_EPS) & (blocked != -1), (mu[:, None] + c).clamp(min=0) / den, inf)
        toward = active & (D * sgn < 0) & run[:, None]
        fresh = (torch.arange(n, device=dev)[None, :] == last_added[:, None]) & (t == 0)
        dd = torch.where(toward & ~fresh, (-t / torch.where(toward, D, torch.ones_like(D))).clamp(min=0), inf)
        vp, jp = dp.min(dim=1)
        vm, jm = dm.min(dim=1)
        vd, jd = dd.min(dim=1)
        add_v = torch.minimum(vp, vm)
        add_j = torch.where(vp <= vm, jp, jm)
        add_s = torch.where(vp <= vm, 1.0, -1.0).to(f64)
        # event: 0 target (wins ties), 1 add, 2 drop
        ev = torch.zeros(Bt, dtype=torch.long, device=dev)
        delta = d_tg.clone()
        m = add_v < delta
        ev[m], delta[m] = 1, add_v[m]
        m = vd < delta
        ev[m], delta[m] = 2, vd[m]
        delta = torch.where(run, delta.clamp(min=0), torch.zeros_like(delta))

        # step
        mu = torch.where(run & (ev == 0), tgt, mu - delta)
        t = t + delta[:, None] * D
        c = c - delta[:, None] * a
        steps += run.long()
        bad |= steps > max_steps

        # requested λ: re-solve on the factor with one refinement, certify, record
        rec = run & (ev == 0)
        if bool(rec.any()):
            r = rec.nonzero()[:, 0]
            bA = b[r].gather(1, idx[r])
            rhs = (bA - mu[r, None] * sA[r]) * valid[r]
            x = torch.cholesky_solve(rhs[..., None], Lc[r])
            res = rhs[..., None] - G[r] @ x
            x = (x + torch.cholesky_solve(res, Lc[r]))[..., 0] * valid[r]
            keep = (x * sA[r]) > 0
            tr = torch.zeros(r.numel(), n, dtype=f64, device=dev).scatter_(1, idx[r], torch.where(keep, x, 0.0))
            cr = b[r] - _times(tr, C, None if corr is None else (corr[0][r], corr[1][r]))
            cr = torch.where(allowed[r], cr, torch.zeros((), dtype=f64, device=dev))
            v = torch.where(tr > 0, (cr - mu[r, None]).abs(), torch.where(tr < 0, (cr + mu[r, None]).abs(), cr.abs() - mu[r, None]))
            v = v.max(dim=1).values
            coef[li[r], r] = tr
            ok = v <= tol_abs[r]
            bad[r[~ok]] = True
            # continue from the refined point (the direction is unchanged)
            t[r] = torch.where(active[r], torch.zeros_like(tr).scatter_(1, idx[r], x), t[r])
            c[r] = torch.where(active[r], mu[r, None] * sgn[r], cr)
            li[r] += 1

        # a class enters (unless it is in the span of the active ones: a tie, it stays out)
        ad = run & (ev == 1)
        if bool(ad.any()):
            r = ad.nonzero()[:, 0]
            j = add_j[r]
            v = C[idx[r], j[:, None]]
            dj = diagC[j]
            if corr is not None:
                vr, kr = corr[0][r], corr[1][r]
                vj = vr.gather(1, j[:, None])
                v = v + (vr.gather(1, idx[r]) + vj) + kr[:, None]
                dj = dj + 2.0 * vj[:, 0] + kr
            v = v * valid[r]
            w = torch.linalg.solve_triangular(Lc[r], v[..., None], upper=False)[..., 0]
            sch = dj - (w * w).sum(dim=1)
            ok = sch > SCHUR_RTOL * dj + sch_atol
            ro, jo = r[ok], j[ok]
            active[ro, jo] = True
            sgn[ro, jo] = add_s[ro]
            t[ro, jo] = 0.0
            c[ro, jo] = mu[ro] * add_s[ro]
            last_added[ro] = jo
            blocked[ro] = 0
            blocked[r[~ok], j[~ok]] = 2
        # a class leaves; it may not re-enter at once on the side it left
        dr = run & (ev == 2)
        if bool(dr.any()):
            r = dr.nonzero()[:, 0]
            j = jd[r]
            sj = sgn[r, j]
            active[r, j] = False
            sgn[r, j] = 0.0
            t[r, j] = 0.0
            c[r, j] = mu[r] * sj
            blocked[r] = 0
            blocked[r, j] = torch.where(sj > 0, 1, -1).to(torch.int8)
            last_added[r] = -1
        c = torch.where(active, mu[:, None] * sgn, c)

    return coef.cpu().numpy(), status.cpu().numpy(), steps.cpu().numpy(), bad.cpu().numpy()
