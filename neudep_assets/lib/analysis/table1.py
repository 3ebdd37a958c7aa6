"""The paper's Table-1 metrics of a dependency, evaluated on a split of logits.

For a target class i with coefficients t (zero at i), the reconstruction is r = Σ_j t_j f_j:

* Abs Err = mean |y_i − r| and Rel Err = Abs Err / mean |y_i|, over every sample of the split;
* Acc = top-1 accuracy with logit i replaced by r (beside Ori. Acc, the accuracy without replacement),
  over the samples that carry a label (label −1 = no class, e.g. out-of-distribution images);
* Pos Acc = the same on the samples labelled i (beside Ori. Pos Acc), n_pos of them.

Within a model y = f; between models (f → g) y = g: the reconstruction from f's logits replaces g's
logit i among g's logits, so Acc and Pos Acc are the target model's accuracy with that logit replaced.

The coefficients are fitted on one split and the logits passed here should be those of another (the
evaluation split); this module does not know which split it is given.

Cost: O(nnz(t) · N) per solution (the reconstruction r = Σ_j t_j f_j read off the sparse
coefficients) plus O(N): the arg-max with column i replaced is read off the top-2 of the original
logits, never recomputed over all n columns. A numba kernel runs the targets in parallel, in blocks
of samples so that each source row is read from memory once per block for every λ and every
coefficient set (:func:`table1_metrics_sets`: the lasso and its refit in one pass); memory is one
transposed copy of the logits plus O(N) per thread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit, prange

from neudep_assets.lib.covlasso.sparse import coef_of

_COLUMNS = ["lambda_index", "target", "n_sources", "abs_err", "rel_err", "acc", "orig_acc", "pos_acc",
            "orig_pos_acc", "n_pos"]


def _top2(Y: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index and value of the largest and of the largest-but-first entry of each row, with np.argmax's
    tie rule (first index wins); a second index of −1 when there is a single column."""
    N = Y.shape[0]
    a1 = np.argmax(Y, axis=1) if N else np.zeros(0, dtype=np.int64)
    v1 = Y[np.arange(N), a1].astype(np.float64)
    if Y.shape[1] < 2:
        return a1, v1, np.full(N, -1), np.full(N, -np.inf)
    a2 = np.empty(N, dtype=np.int64)
    for start in range(0, N, chunk):
        part = np.array(Y[start:start + chunk], dtype=np.float64)
        part[np.arange(part.shape[0]), a1[start:start + chunk]] = -np.inf
        a2[start:start + chunk] = np.argmax(part, axis=1)
    return a1, v1, a2, Y[np.arange(N), a2].astype(np.float64)


#: samples per block of the kernel: the source rows of one target's supports are read once per block and
#: reused, from cache, by every λ and every coefficient set (lasso and refit)
_BLOCK = 1024


@njit(cache=True, parallel=True)
def _kernel(LsT, YT, targets, a1, v1, v1n, a2, v2, v2n, lab, indptr, indices, datas, L, yw):
    """abs_err, hits, pos_hits (each (V, T, L)) of the V coefficient sets ``datas`` (V, nnz) that share
    one sparsity pattern: rows k·L + l of (indptr, indices); the reconstruction is yw·y + Σ θ_j f_j."""
    V = datas.shape[0]
    T = targets.shape[0]
    N = LsT.shape[1]
    abs_err = np.zeros((V, T, L))
    hits = np.zeros((V, T, L))
    pos_hits = np.zeros((V, T, L))
    for k in prange(T):
        i = targets[k]
        y = YT[i]
        thr = np.empty(N)
        pos = np.zeros(N, np.int64)  # labelled i
        oh = np.zeros(N, np.int64)  # the arg-max over the other columns is right
        n_oh = 0
        for s in range(N):
            if a1[s] == i:
                oi, ov = a2[s], (v2n[s] if i < a2[s] else v2[s])
            else:
                oi, ov = a1[s], (v1n[s] if i < a1[s] else v1[s])
            # r wins iff r > thr (np.argmax's first-index rule folded into thr: one float below on a tie)
            thr[s] = -np.inf if oi < 0 else ov
            pos[s] = lab[s] == i
            if oi == lab[s]:
                oh[s] = 1
                n_oh += 1
        e = np.zeros((V, L))
        ph = np.zeros((V, L), np.int64)
        lost = np.zeros((V, L), np.int64)
        buf = np.empty(min(N, _BLOCK))
        for b0 in range(0, N, _BLOCK):
            b1 = min(N, b0 + _BLOCK)
            B = b1 - b0
            # zero-based views of the block: with them the inner loops vectorise (indexing b0 + s does not)
            r = buf[:B]
            yb, thrb, posb, ohb = y[b0:b1], thr[b0:b1], pos[b0:b1], oh[b0:b1]
            for l in range(L):
                row = k * L + l
                for v in range(V):
                    if yw != 0.0:
                        for s in range(B):
                            r[s] = yw * np.float64(yb[s])
                    else:
                        r[:] = 0.0
                    for p in range(indptr[row], indptr[row + 1]):
                        d = datas[v, p]
                        src = LsT[indices[p], b0:b1]
                        for s in range(B):
                            r[s] += d * np.float64(src[s])
                    ev = 0.0
                    phv = 0
                    lostv = 0
                    for s in range(B):  # branch-free: vectorises
                        ev += abs(np.float64(yb[s]) - r[s])
                        w = np.int64(r[s] > thrb[s])
                        phv += w * posb[s]
                        lostv += w * ohb[s]
                    e[v, l] += ev
                    ph[v, l] += phv
                    lost[v, l] += lostv
        for v in range(V):
            for l in range(L):
                abs_err[v, k, l] = e[v, l] / N
                pos_hits[v, k, l] = ph[v, l]
                hits[v, k, l] = ph[v, l] + n_oh - lost[v, l]
    return abs_err, hits, pos_hits


def table1_metrics(source_logits: np.ndarray, labels: np.ndarray, coef, targets: np.ndarray, *,
                   target_logits: np.ndarray | None = None) -> pd.DataFrame:
    """Table-1 metrics for every (λ, target) of a solution path.

    source_logits (N, n): logits of the source model on the evaluation split; target_logits (N, m):
    logits of the target model on the same samples (None: within, the source itself); labels (N,)
    int, −1 = no class (excluded from the accuracies, not from the errors); coef (n_lambdas,
    n_targets, n), dense or :class:`~neudep_assets.lib.covlasso.sparse.SparseCoef`; targets (n_targets,) class indices of the target model.

    One row per (lambda_index, target): n_sources (nonzero coefficients), abs_err, rel_err, acc,
    orig_acc, pos_acc, orig_pos_acc, n_pos. Accuracies are NaN when no sample qualifies.
    """
    return table1_metrics_sets(source_logits, labels, [coef], targets, target_logits=target_logits)[0]


def table1_metrics_sets(source_logits: np.ndarray, labels: np.ndarray, coefs, targets: np.ndarray, *,
                        target_logits: np.ndarray | None = None, excl=None, gauge: str = "raw") -> list[pd.DataFrame]:
    """:func:`table1_metrics` of several coefficient sets on one sparsity pattern (e.g. the lasso and
    its least-squares refit), in one pass over the logits: each source row is read once for all.

    ``gauge="centered"``: the logits are the centred ones (f̃ = f − m·1) and the coefficients t those of
    each target's re-centred sources h_j = f_j − m₋ᵢ (:mod:`~neudep_assets.lib.covlasso.gauge`; `excl`: each
    target's excluded source). The reconstruction r = tᵀh = θᵀf̃ (θ lifted) estimates y = g̃_i, so e = y − r and
    Rel Err = mean|e| / mean|y|. For the accuracies logit i itself is replaced, in raw terms, by
    ĝ_i = m₋ᵢ + (m/(m−1))·r (m: the target model's classes; y = ((m−1)/m)(g_i − m₋ᵢ)); against the other
    centred logits that is r' = y − (m/(m−1))·e, which the kernel evaluates as (m/(m−1))·θᵀf̃ − y/(m−1)."""
    from neudep_assets.lib.covlasso.gauge import check_gauge, lift

    check_gauge(gauge)
    Ls = np.asarray(source_logits)
    if Ls.ndim != 2:
        raise ValueError(f"source_logits must be (N, n), got shape {Ls.shape}")
    N, n = Ls.shape
    Y = Ls if target_logits is None else np.asarray(target_logits)
    if Y.ndim != 2 or Y.shape[0] != N:
        raise ValueError(f"target_logits must be (N={N}, m), got shape {Y.shape}")
    m = Y.shape[1]
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != N:
        raise ValueError(f"labels must have N={N} entries, got {labels.shape[0]}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            raise ValueError("labels must be integers (−1 = no class)")
        labels = labels.astype(np.int64)
    if labels.size and labels.max() >= m:
        raise ValueError(f"labels reach {labels.max()} but the target model has {m} classes")
    coefs = [coef_of(c) for c in coefs]
    n_sources = coefs[0].n_active()  # (L, T): the sources of t, before any lifting
    yw, err_scale = 0.0, 1.0
    if gauge != "raw":
        m_t = Y.shape[1]
        coefs = [lift(c, excl, gauge) for c in coefs]
        coefs = [c.with_data(c.data * (m_t / (m_t - 1))) for c in coefs]
        yw, err_scale = -1.0 / (m_t - 1), (m_t - 1) / m_t
    coef = coefs[0]
    targets = np.asarray(targets, dtype=np.int64).ravel()
    if coef.shape[1] != targets.shape[0] or coef.shape[2] != n:
        raise ValueError(f"coef must be (n_lambdas, n_targets={targets.shape[0]}, n={n}), got {coef.shape}")
    if any(c.shape != coef.shape or not (np.array_equal(c.indptr, coef.indptr)
                                         and np.array_equal(c.indices, coef.indices)) for c in coefs[1:]):
        raise ValueError("the coefficient sets must share one sparsity pattern (shape, indptr, indices)")
    if targets.size and (targets.min() < 0 or targets.max() >= m):
        raise ValueError(f"targets must lie in [0, {m})")
    if not (np.isfinite(Ls).all() and np.isfinite(Y).all()):
        raise ValueError("logits contain non-finite values")
    L, T = coef.shape[:2]
    if L == 0 or T == 0:
        return [pd.DataFrame({c: pd.Series(dtype="float64") for c in _COLUMNS}) for _ in coefs]

    # the comparison of r with the other logits must not be decided by rounding: r and the thresholds in
    # float64; the logits themselves stay float32 when they are (widening them is exact), one transposed copy
    a1, v1, a2, v2 = _top2(Y)
    labelled = labels >= 0
    n_lab = int(labelled.sum())
    correct = (a1 == labels) & labelled
    orig_acc = correct.sum() / n_lab if n_lab else np.nan
    mean_abs_y = np.abs(Y[:, targets]).mean(axis=0, dtype=np.float64)  # (T,)
    n_pos = np.bincount(labels[labelled], minlength=m)[targets]
    orig_pos_hits = np.bincount(labels[correct], minlength=m)[targets]

    lab = np.where(labelled, labels, -1).astype(np.int64)
    LsT = np.ascontiguousarray(Ls.T, dtype=_kernel_dtype(Ls))
    YT = LsT if target_logits is None else np.ascontiguousarray(Y.T, dtype=_kernel_dtype(Y))
    ninf = np.full(N, -np.inf)
    datas = np.ascontiguousarray(np.stack([c.data for c in coefs]), dtype=np.float64)
    ae, hi, ph = _kernel(LsT, YT, targets, a1.astype(np.int64), v1, np.nextafter(v1, ninf), a2.astype(np.int64), v2,
                         np.nextafter(v2, ninf), lab, coef.indptr, coef.indices, datas, L, yw)
    ae *= err_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        orig_pos_acc = np.where(n_pos > 0, orig_pos_hits / np.maximum(n_pos, 1), np.nan)
    frames = []
    for v in range(len(coefs)):
        abs_err, hits, pos_hits = ae[v].T, hi[v].T, ph[v].T
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_err = np.where(mean_abs_y > 0, abs_err / mean_abs_y, np.nan)
            acc = hits / n_lab if n_lab else np.full((L, T), np.nan)
            pos_acc = np.where(n_pos > 0, pos_hits / n_pos, np.nan)
        frames.append(pd.DataFrame({
            "lambda_index": np.repeat(np.arange(L, dtype=np.int64), T),
            "target": np.tile(targets, L),
            "n_sources": n_sources.ravel().astype(np.int64),
            "abs_err": abs_err.ravel(), "rel_err": rel_err.ravel(), "acc": np.ravel(acc),
            "orig_acc": np.full(L * T, orig_acc, dtype=np.float64), "pos_acc": pos_acc.ravel(),
            "orig_pos_acc": np.tile(orig_pos_acc, L), "n_pos": np.tile(n_pos.astype(np.int64), L),
        }))
    return frames


def _kernel_dtype(a: np.ndarray):
    """float32 logits stay float32 (the kernel widens each value exactly); anything else goes float64."""
    return np.float32 if a.dtype == np.float32 else np.float64
