"""Logit offsets and the logit gauge.

Softmax ignores each sample's mean logit over the classes, m(x) = (1/n) Σ_c f_c(x). A model may still
carry a large common offset m(x) (plain cross-entropy never pins it down), and raw-logit CovLasso then
finds "dependencies" that mostly reproduce that offset (coefficients summing to ≈ 1). This module

- measures the offset per model and split (:func:`logit_stats`),
- offers the two gauges of an analysis (:data:`LOGIT_GAUGES`): ``raw`` (the paper's, Remark 1) and
  ``centered`` (f − m(x)·1, invisible to every prediction), applied to logits (:func:`apply_gauge`) and
  exactly to second moments (:func:`gauge_moment`: E[(Qf)(Qg)ᵀ] = Q E[f gᵀ] Q, Q = I − 11ᵀ/n),
- tells an offset dependency from a discriminative one (:func:`offset_direction_share`).

The centered gauge of an analysis also re-centres each target's sources without the target (see
:mod:`neudep_assets.lib.covlasso.gauge`): the moments here are the starting point, not the whole story.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neudep_assets.lib.config import LOGIT_GAUGES
from neudep_assets.lib.covlasso.sparse import SparseCoef, coef_of
#: an offset share above this makes raw-gauge dependencies mostly reproduce the offset
OFFSET_SHARE_WARN = 0.3


__all__ = ["LOGIT_GAUGES", "OFFSET_SHARE_WARN", "check_gauge", "apply_gauge", "gauge_moment", "other_gauge",
           "logit_stats", "offset_warning", "offset_direction_share",
           "offset_direction_share_of"]


def other_gauge(gauge: str) -> str:
    """The gauge that is not ``gauge``."""
    return LOGIT_GAUGES[1 - LOGIT_GAUGES.index(check_gauge(gauge))]


def check_gauge(gauge: str, where: str = "logit_gauge") -> str:
    """The gauge itself, or ``ValueError`` naming the allowed values."""
    if gauge not in LOGIT_GAUGES:
        raise ValueError(f"{where} must be one of {', '.join(LOGIT_GAUGES)}, got {gauge!r}")
    return gauge


def apply_gauge(logits: np.ndarray, gauge: str) -> np.ndarray:
    """Logits (samples × classes) in ``gauge``: as they are (raw) or minus each sample's mean (centered)."""
    check_gauge(gauge)
    if gauge == "raw":
        return logits
    f = np.asarray(logits)
    m = f.mean(axis=1, keepdims=True, dtype=np.float64)
    out = np.empty_like(f)
    for s in range(0, f.shape[0], 2048):  # in blocks of rows: f − m in float64, rounded once, no N × n float64 copy
        np.subtract(f[s:s + 2048], m[s:s + 2048], out=out[s:s + 2048], casting="same_kind")
    return out


def gauge_moment(M: np.ndarray, gauge: str) -> np.ndarray:
    """A second moment E[f gᵀ] (float64) in ``gauge``: centered = Q_f M Q_g, i.e. M with its row and
    column means removed (exactly the moment of the centered logits, without recomputing it)."""
    check_gauge(gauge)
    if gauge == "raw":
        return M
    M = np.asarray(M, dtype=np.float64)
    out = M - M.mean(axis=0, keepdims=True) - M.mean(axis=1, keepdims=True) + M.mean()
    if out.shape[0] == out.shape[1] and np.array_equal(M, M.T):
        out = 0.5 * (out + out.T)
    return out


def logit_stats(logits: np.ndarray, *, chunk: int = 8192) -> dict[str, float | int]:
    """Offset diagnostics of one logit set (samples × classes), accumulated in float64.

    - ``mean_logit_mean`` / ``mean_logit_std``: mean and std over samples of m(x), the sample's mean logit;
    - ``within_sample_std``: RMS over samples of the std over classes of f(x) − m(x);
    - ``offset_share``: E[m²] / E[f²] (E over samples and classes), the share of the raw second moment
      that is the common offset; E[f²] = E[m²] + within_sample_std², so it lies in [0, 1];
    - ``top_logit_mean``: mean over samples of the largest logit (and ``top_minus_mean``: of max − m).
    """
    f = np.asarray(logits)
    if f.ndim != 2 or f.shape[1] == 0:
        raise ValueError(f"logits must be samples × classes, got shape {f.shape}")
    n_s = f.shape[0]
    m_all = np.empty(n_s, dtype=np.float64)
    sq_within = top = top_c = 0.0
    for s in range(0, n_s, chunk):
        a = np.asarray(f[s:s + chunk], dtype=np.float64)
        m = a.mean(axis=1)
        m_all[s:s + chunk] = m
        sq_within += float(((a - m[:, None]) ** 2).mean(axis=1).sum())
        mx = a.max(axis=1)
        top += float(mx.sum())
        top_c += float((mx - m).sum())
    denom = max(n_s, 1)
    e_m2 = float((m_all ** 2).sum()) / denom
    spread2 = sq_within / denom
    total = e_m2 + spread2
    return {
        "n_samples": int(n_s), "n_classes": int(f.shape[1]),
        "mean_logit_mean": float(m_all.mean()) if n_s else float("nan"),
        "mean_logit_std": float(m_all.std()) if n_s else float("nan"),
        "within_sample_std": float(np.sqrt(spread2)),
        "offset_share": e_m2 / total if total > 0 else 0.0,
        "top_logit_mean": top / denom if n_s else float("nan"),
        "top_minus_mean": top_c / denom if n_s else float("nan"),
    }


def offset_warning(model: str, split: str, share: float) -> str | None:
    """The warning for a large offset share (> :data:`OFFSET_SHARE_WARN`), or None."""
    if not share > OFFSET_SHARE_WARN:
        return None
    return (f"{model}/{split}: {100 * share:.0f}% of E[f²] is the per-sample mean logit, which softmax ignores. "
            "Raw-gauge dependencies of this model mostly reproduce that common offset (coefficients summing "
            "to ≈ 1), not class structure; compare with `logit_gauge: centered` "
            "(dependency_metrics.offset_dir_share tells the two apart per dependency).")


def offset_direction_share(C: np.ndarray, coef) -> np.ndarray:
    """Share of each reconstruction's second moment that its offset component carries.

    For coefficients t over the source logits f (second moment ``C`` = E[f fᵀ], the gauge the analysis used),
    the reconstruction r = tᵀf splits as r = (1ᵀt)·m(x) + tᵀ(f − m(x)·1), so

        E[r²] = (1ᵀt)² E[m²] + 2 (1ᵀt) E[m · tᵀ(f − m·1)] + E[(tᵀ(f − m·1))²] = tᵀCt,

    and the share returned is (1ᵀt)² E[m²] / tᵀCt, with E[m²] = 1ᵀC1 / n²: the denominator is the
    reconstruction's whole second moment, cross term included (an offset correlated with the classes makes
    the cross term nonzero; leaving it out overstated the share). ≈ 1 for a dependency that reproduces the
    offset, ≈ 0 for a discriminative one; above 1 when the cross term is negative (the two parts cancel in
    part); NaN when t = 0. Centered-gauge moments have no offset, so their share is 0. ``coef``: an array
    (..., n) (the result has its leading shape) or :class:`~neudep_assets.lib.covlasso.sparse.SparseCoef` /
    a path (the result is (L, T)); O(nnz(t)²) per solution, read off C at the support.
    """
    C = np.asarray(C, dtype=np.float64)
    n = C.shape[0]
    if not (isinstance(coef, SparseCoef) or hasattr(coef, "sparse")):  # an array (..., n)
        dense = np.asarray(coef, dtype=np.float64)
        if dense.shape[-1] != n:
            raise ValueError(f"coef has {dense.shape[-1]} sources but C is {n}×{n}")
        return offset_direction_share(C, SparseCoef.from_dense(dense.reshape(1, -1, n)))[0].reshape(dense.shape[:-1])
    sc = coef_of(coef)
    if sc.shape[2] != n:
        raise ValueError(f"coef has {sc.shape[2]} sources but C is {n}×{n}")
    e_m2 = max(float(C.sum()) / n ** 2, 0.0) if n else 0.0  # E[m²] (≈ 0 up to rounding when centered)
    quad, ones = _support_forms(C, sc.indptr, sc.indices, sc.data)
    off = ones ** 2 * e_m2
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(quad > 0, off / np.where(quad > 0, quad, 1.0), np.nan)
    L, T, _ = sc.shape
    return share.reshape(T, L).T.copy()


@njit(cache=True, parallel=True)
def _support_forms(C, indptr, indices, data):
    """Per CSR row t: tᵀCt and 1ᵀt, reading C at the support only."""
    R = indptr.shape[0] - 1
    quad = np.empty(R)
    ones = np.empty(R)
    for r in prange(R):
        a, b = indptr[r], indptr[r + 1]
        q = 0.0
        o = 0.0
        for p in range(a, b):
            acc = 0.0
            for u in range(a, b):
                acc += C[indices[p], indices[u]] * data[u]
            q += data[p] * acc
            o += data[p]
        quad[r], ones[r] = q, o
    return quad, ones


def offset_direction_share_of(C: np.ndarray, coef, targets, lambda_index, target_class) -> np.ndarray:
    """:func:`offset_direction_share` of a path's coefficients (a path, its sparse coefficients or the
    dense (λ, targets, n) array), picked for the rows (lambda_index, target_class) of a per-target table."""
    share = offset_direction_share(C, coef)
    pos = {int(t): k for k, t in enumerate(np.asarray(targets))}
    return share[np.asarray(lambda_index, dtype=int), [pos[int(t)] for t in target_class]]
