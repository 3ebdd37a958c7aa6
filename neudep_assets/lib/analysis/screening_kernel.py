"""The numba kernel of the screening diagnostics (:func:`neudep_assets.lib.analysis.theory.screening`)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neudep_assets.lib.covlasso.gauge import correction


@njit(cache=True, error_model="numpy")
def _thm3_threshold(bmax, norms, lam, lmax, applicable):
    """The right-hand side of Theorem 3 (Eq. 13) for one source; +inf when b = 0 (t = 0 solves it for every
    λ), −inf when the theorem does not apply (nothing screened)."""
    if not applicable:
        return -np.inf
    if bmax <= 0:
        return np.inf
    return 1.0 - 2.0 * norms * abs(1.0 / lam - 1.0 / lmax)


@njit(cache=True, parallel=True, error_model="numpy")
def screen_counts(Mt, cols, excl, sqd, sqq, lam, applicable, indptr, indices, data, coef_tol):
    """Per (λ, target): n_nonzero, thm3/conj1 screened and violations, largest violating |coef|, and
    λ/λ_max: the masks of :func:`theory._rules`, counted one target at a time. Row t's b is Mt[cols[t]] and
    its ‖A_j‖ = sqd[t, j] (sqd of one row: shared by every target, the raw gauge)."""
    L, T = lam.shape
    n = Mt.shape[1]
    out_i = np.zeros((5, L, T), np.int64)
    out_f = np.zeros((3, L, T))
    for t in prange(T):
        row = Mt[cols[t]]
        dg = sqd[0] if sqd.shape[0] == 1 else sqd[t]
        ex = excl[t]
        bmax = 0.0
        for j in range(n):
            if j != ex and abs(row[j]) > bmax:
                bmax = abs(row[j])
        lmax = 2.0 * bmax
        thr0 = np.empty(L)
        gap2 = np.empty(L)
        lrat = np.empty(L)
        for l in range(L):
            gap2[l] = 2.0 * sqq[t] * abs(1.0 / lam[l, t] - 1.0 / lmax)
            lrat[l] = lam[l, t] / lmax if lmax > 0 else np.inf
            out_f[2, l, t] = lrat[l]
        for j in range(n):
            if j == ex:
                continue
            ratio = abs(row[j]) / bmax if bmax > 0 else 0.0
            for l in range(L):
                thr = _thm3_threshold(bmax, dg[j] * sqq[t], lam[l, t], lmax, applicable[t])
                if ratio < thr:
                    out_i[1, l, t] += 1
                if ratio < lrat[l]:
                    out_i[3, l, t] += 1
        for l in range(L):
            r = t * L + l
            for p in range(indptr[r], indptr[r + 1]):
                j = indices[p]
                a = abs(data[p])
                if j == ex or not a > coef_tol:
                    continue
                out_i[0, l, t] += 1
                ratio = abs(row[j]) / bmax if bmax > 0 else 0.0
                thr = _thm3_threshold(bmax, dg[j] * sqq[t], lam[l, t], lmax, applicable[t])
                if ratio < thr:
                    out_i[2, l, t] += 1
                    out_f[0, l, t] = max(out_f[0, l, t], a)
                if ratio < lrat[l]:
                    out_i[4, l, t] += 1
                    out_f[1, l, t] = max(out_f[1, l, t], a)
    return out_i, out_f


def gauge_rows(C: np.ndarray, pb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Mt, cols, sqrt diag) for :func:`screen_counts` of a ``theory._Problem``: raw, M's rows and C's
    diagonal shared by all targets; centered, each target's own b and diag Ĉ (T × n each: callers pass
    blocks of targets)."""
    d = np.maximum(np.diag(C), 0.0)
    if pb.gauge == "raw":
        return pb.Mt, pb.targets, np.sqrt(d)[None, :]
    V, kap = correction(C, pb.excluded, pb.gauge)
    B = np.ascontiguousarray((pb.M[:, pb.targets] + pb.shift[None, :]).T)
    D = np.ascontiguousarray(np.sqrt(np.maximum(d[None, :] + 2.0 * V.T + kap[:, None], 0.0)))
    return B, np.arange(pb.targets.shape[0]), D
