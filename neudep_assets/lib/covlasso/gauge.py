"""The centered gauge of a CovLasso problem, per target, without letting the target see itself.

Softmax ignores each sample's mean logit m(x). Centering all n logits by it (f̃ = f − m·1, moment
G = QCQ, Q = I − 11ᵀ/n) makes them sum to zero, f̃_i = −Σ_{j≠i} f̃_j: every target is then exactly the
negated sum of its sources, and the mean that centred the sources contains the target. So the sources of
target i are centred by the mean over the *other* classes, m₋ᵢ = (1/(n−1)) Σ_{j≠i} f_j:

    h_j = f_j − m₋ᵢ = f̃_j + f̃_i/(n − 1)          (j ≠ i; f_i never enters, f̃_i only cancels the m in f̃_j)

and the target is the centred logit f̃_i = f_i − m = ((n−1)/n)(f_i − m₋ᵢ), a fixed multiple of a function of
the differences f_i − f_j (so invisible to softmax, like the sources). Between models (f → g) the sources are
f's classes j ≠ i centred by f's mean over j ≠ i, so f_i (excluded by the paper's Eq. 4) does not come back
through the mean; the target is g̃_i. For a class i ≥ n of g (no counterpart in f) nothing is excluded and the
sources are f̃ itself.

In terms of the centred moments the analysis already has (G = E[f̃f̃ᵀ], M = G within or E[f̃g̃ᵀ] between,
s = E[target²]), with v = G[:, i]/(n−1) and κ = G_ii/(n−1)², target i's problem is exactly

    Ĉ⁽ⁱ⁾ = (G + v1ᵀ + 1vᵀ + κ11ᵀ)₋ᵢ,₋ᵢ,    b⁽ⁱ⁾ = (M[:, i] + M_ii/(n−1)·1)₋ᵢ,    s⁽ⁱ⁾ = s_i,

a rank-two correction of G per target, from the moments alone (no pass over the samples). A solution t
reconstructs the target as tᵀh = θᵀf̃ with the *lifted* coefficients θ = t + (1ᵀt/(n−1))·e_i (:func:`lift`),
so every error of the raw gauge's formulas (err = s − 2θᵀM[:, i] + θᵀGθ, Table 1 on f̃) holds with θ.
"""

from __future__ import annotations

import numpy as np
from neudep_assets.lib.covlasso.sparse import SparseCoef

GAUGES = ("raw", "centered")


def check_gauge(gauge: str, where: str = "gauge") -> str:
    if gauge not in GAUGES:
        raise ValueError(f"{where} must be one of {', '.join(GAUGES)}, got {gauge!r}")
    return gauge


def correction(C: np.ndarray, excl: np.ndarray, gauge: str) -> tuple[np.ndarray, np.ndarray]:
    """(V (n, T), Fortran order, κ (T,)) of the per-target correction Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ (V of shape (0, T): none, the
    raw gauge). `excl`: each target's excluded source (−1: none, no correction)."""
    check_gauge(gauge)
    excl = np.asarray(excl, np.int64)
    T, n = excl.shape[0], C.shape[0]
    if gauge == "raw":
        return np.zeros((0, T), order="F"), np.zeros(T)
    V = np.zeros((n, T), order="F")  # column-major: each target's v is contiguous for the kernels
    kap = np.zeros(T)
    k = np.flatnonzero(excl >= 0)
    e = excl[k]
    V[:, k] = C[:, e] / (n - 1)
    kap[k] = C[e, e] / (n - 1) ** 2
    return V, kap


def rhs_shift(M: np.ndarray, targets: np.ndarray, excl: np.ndarray, gauge: str) -> np.ndarray:
    """(T,) the constant added to each target's b: M[e, i]/(n−1) (0 in the raw gauge or without exclusion)."""
    check_gauge(gauge)
    excl = np.asarray(excl, np.int64)
    out = np.zeros(excl.shape[0])
    if gauge == "raw":
        return out
    k = np.flatnonzero(excl >= 0)
    out[k] = M[excl[k], np.asarray(targets, np.int64)[k]] / (M.shape[0] - 1)
    return out


def lift(coef: SparseCoef, excl: np.ndarray, gauge: str) -> SparseCoef:
    """θ = t + (1ᵀt/(n−1))·e_excl per solution: the coefficients on the centred logits f̃ (the same t in the
    raw gauge). Every row of a target with an excluded source gets that entry (0 where t = 0), so two
    coefficient sets on one pattern (the lasso and its refit) stay on one pattern; rows stay sorted."""
    check_gauge(gauge)
    excl = np.asarray(excl, np.int64)
    L, T, n = coef.shape
    if gauge == "raw" or not (excl >= 0).any():
        return coef
    R = T * L
    rows = np.repeat(np.arange(R), np.diff(coef.indptr))
    sums = np.bincount(rows, weights=coef.data, minlength=R)
    add = np.flatnonzero(np.repeat(excl >= 0, L))  # rows k·L + l of targets with an exclusion
    r_all = np.concatenate([rows, add])
    j_all = np.concatenate([coef.indices, np.repeat(excl, L)[add]])
    v_all = np.concatenate([coef.data, sums[add] / (n - 1)])
    order = np.lexsort((j_all, r_all))
    indptr = np.zeros(R + 1, np.int64)
    np.cumsum(np.bincount(r_all, minlength=R), out=indptr[1:])
    return SparseCoef(indptr, j_all[order].astype(np.int64), v_all[order].astype(np.float64), coef.shape)
