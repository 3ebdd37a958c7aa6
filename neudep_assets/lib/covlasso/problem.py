"""The CovLasso problem of each target, shared by the solver and every diagnostic.

For target i: ``min_t tᵀĈt − 2bᵀt + λ‖t‖₁`` with b = C[:, i] (within) or cross[:, i] (between); the
excluded source is i itself (within, and between when i < n: paper Eq. 4), and λ_max = 2‖b‖_∞ over the
sources that remain. err_i(t) = s − 2bᵀt + tᵀCt is the mean squared reconstruction error (Eq. 5).
"""

from __future__ import annotations

import numpy as np


def target_rhs(C: np.ndarray, cross: np.ndarray | None, targets,
               gauge: str = "raw") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, excluded, λ_max) for `targets`: B (n, T) the columns b (the excluded entry left as is; in the
    centered gauge shifted by M[e, i]/(n−1), :mod:`gauge`), excluded (T,) the source index each target
    excludes (−1 for none), λ_max (T,) = 2‖b‖_∞ without it."""
    from neudep_assets.lib.covlasso.gauge import rhs_shift

    n = C.shape[0]
    tg = np.asarray(targets, dtype=np.int64).ravel()
    M = C if cross is None else cross
    B = np.ascontiguousarray(M[:, tg], dtype=np.float64)
    excl = tg.copy() if cross is None else np.where(tg < n, tg, -1).astype(np.int64)
    if gauge != "raw":
        B += rhs_shift(M, tg, excl, gauge)[None, :]
    lam_max = 2.0 * np.abs(masked(B, excl)).max(axis=0) if n else np.zeros(tg.shape[0])
    return B, excl, lam_max


def masked(B: np.ndarray, excl: np.ndarray) -> np.ndarray:
    """A copy of B with each column's excluded source set to 0."""
    X = B.copy()
    cols = np.nonzero(excl >= 0)[0]
    X[excl[cols], cols] = 0.0
    return X


def path_errors(C: np.ndarray, coef, B: np.ndarray, s: np.ndarray) -> np.ndarray:
    """err_i(θ*(λ)) = s − 2bᵀt + tᵀCt per (λ, target), shape (L, T), for coef (dense (L, T, n) or a
    :class:`~neudep_assets.lib.covlasso.sparse.SparseCoef`) that are zero at each target's excluded source,
    B (n, T) from :func:`target_rhs` and s (T,) = E[target²]. Reads C only at the nonzeros."""
    from neudep_assets.lib.covlasso.sparse import coef_of, path_errors_sparse

    sc = coef_of(coef)
    return path_errors_sparse(np.ascontiguousarray(C, dtype=np.float64), sc, np.ascontiguousarray(B, dtype=np.float64),
                              np.arange(sc.shape[1]), s)
