"""Sparse coefficients of a CovLasso path, and the per-solution quantities computed from them.

A path over L values of λ and T targets has L·T solutions t ∈ Rⁿ with a handful of nonzeros each;
they are kept as one compressed row array (CSR) with one row per (target, λ), target-major
(row = k·L + l), so that concatenating target chunks is appending rows. Memory O(nonzeros).

The kernels here read C only at the nonzeros: err_i(t) = s − 2bᵀt + tᵀCt costs O(nnz(t)²), the
least-squares refit on the support O(nnz(t)³), never O(n²) per solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange


@dataclass
class SparseCoef:
    """Coefficients of shape (L, T, n), stored as CSR rows k·L + l (target k, λ index l)."""

    indptr: np.ndarray  # (T·L + 1,) int64
    indices: np.ndarray  # (nnz,) int64 source class, increasing within a row
    data: np.ndarray  # (nnz,) float64
    shape: tuple[int, int, int]  # (L, T, n)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @classmethod
    def from_dense(cls, coef: np.ndarray) -> "SparseCoef":
        coef = np.asarray(coef, dtype=np.float64)
        L, T, n = coef.shape
        tl = coef.transpose(1, 0, 2)  # (T, L, n): rows in target-major order
        k, l, j = np.nonzero(tl)
        counts = np.bincount(k * L + l, minlength=T * L)
        indptr = np.zeros(T * L + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, j.astype(np.int64), tl[k, l, j].astype(np.float64), (L, T, n))

    @classmethod
    def concat(cls, parts: list["SparseCoef"]) -> "SparseCoef":
        """Join target chunks (same L and n) in order."""
        L, _, n = parts[0].shape
        if any(p.shape[0] != L or p.shape[2] != n for p in parts):
            raise ValueError("chunks must share the λ grid and the number of sources")
        offs = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        indptr = np.concatenate([np.zeros(1, np.int64)] + [p.indptr[1:] + o for p, o in zip(parts, offs)])
        return cls(indptr, np.concatenate([p.indices for p in parts]), np.concatenate([p.data for p in parts]),
                   (L, sum(p.shape[1] for p in parts), n))

    def dense(self) -> np.ndarray:
        """The (L, T, n) array (small problems and tests only: O(L·T·n) memory)."""
        L, T, n = self.shape
        out = np.zeros((T * L, n))
        rows = np.repeat(np.arange(T * L), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out.reshape(T, L, n).transpose(1, 0, 2).copy()

    def n_active(self) -> np.ndarray:
        """(L, T) number of nonzero coefficients."""
        L, T, _ = self.shape
        return np.diff(self.indptr).reshape(T, L).T.copy()

    def row(self, lambda_index: int, target_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(sources, values) of one solution."""
        r = target_pos * self.shape[0] + lambda_index
        a, b = self.indptr[r], self.indptr[r + 1]
        return self.indices[a:b], self.data[a:b]

    def with_data(self, data: np.ndarray) -> "SparseCoef":
        """The same supports with other values (e.g. the refit)."""
        return SparseCoef(self.indptr, self.indices, np.asarray(data, dtype=np.float64), self.shape)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lambda_index, target_pos, source, value) of every nonzero, ordered by λ, target, source."""
        L = self.shape[0]
        rows = np.repeat(np.arange(self.indptr.shape[0] - 1), np.diff(self.indptr))
        k, l = np.divmod(rows, L)
        order = np.lexsort((self.indices, k, l))
        return l[order], k[order], self.indices[order], self.data[order]


def coef_of(path_or_coef) -> SparseCoef:
    """SparseCoef of a CovLassoPath, of anything with a dense ``coef`` (L, T, n), or of such an array."""
    if isinstance(path_or_coef, SparseCoef):
        return path_or_coef
    sp = getattr(path_or_coef, "sparse", None)
    if isinstance(sp, SparseCoef):
        return sp
    coef = getattr(path_or_coef, "coef", path_or_coef)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 3:
        raise ValueError(f"coefficients must have shape (n_lambdas, n_targets, n), got {coef.shape}")
    return SparseCoef.from_dense(coef)


# ----------------------------------------------------------------------------- kernels


@njit(cache=True, parallel=True)
def _errors(C, M, cols, s, indptr, indices, data, L):
    R = indptr.shape[0] - 1
    out = np.empty(R)
    for r in prange(R):
        k = r // L
        c = cols[k]
        a, b = indptr[r], indptr[r + 1]
        lin = 0.0
        quad = 0.0
        for p in range(a, b):
            jp = indices[p]
            vp = data[p]
            lin += M[jp, c] * vp
            acc = 0.0
            for q in range(a, b):
                acc += C[jp, indices[q]] * data[q]
            quad += vp * acc
        out[r] = s[k] - 2.0 * lin + quad
    return out


def path_errors_sparse(C: np.ndarray, coef: SparseCoef, M: np.ndarray, cols: np.ndarray, s: np.ndarray) -> np.ndarray:
    """err = s − 2bᵀt + tᵀCt per (λ, target), shape (L, T); b of target k is M[:, cols[k]] (M = C within,
    cross between) and t must be zero at the excluded source (the solver's always are)."""
    L, T, _ = coef.shape
    e = _errors(C, M, np.asarray(cols, np.int64), np.asarray(s, np.float64), coef.indptr, coef.indices,
                coef.data, L)
    return e.reshape(T, L).T.copy()


@njit(cache=True)
def _chol_solve(A, y):
    """Solve A x = y for SPD A by Cholesky; returns (x, ok) with ok False on a non-positive pivot."""
    k = A.shape[0]
    Lf = np.zeros((k, k))
    top = 0.0
    for i in range(k):
        top = max(top, A[i, i])
    for i in range(k):
        for j in range(i + 1):
            acc = A[i, j]
            for p in range(j):
                acc -= Lf[i, p] * Lf[j, p]
            if i == j:
                if acc <= 1e-13 * top:
                    return y.copy(), False
                Lf[i, i] = np.sqrt(acc)
            else:
                Lf[i, j] = acc / Lf[j, j]
    z = np.empty(k)
    for i in range(k):
        acc = y[i]
        for p in range(i):
            acc -= Lf[i, p] * z[p]
        z[i] = acc / Lf[i, i]
    x = np.empty(k)
    for i in range(k - 1, -1, -1):
        acc = z[i]
        for p in range(i + 1, k):
            acc -= Lf[p, i] * x[p]
        x[i] = acc / Lf[i, i]
    return x, True


@njit(cache=True, parallel=True)
def _refit(C, M, cols, indptr, indices, L, V, kap, shift):
    R = indptr.shape[0] - 1
    out = np.zeros(indices.shape[0])
    for r in prange(R):
        c = cols[r // L]
        a, b = indptr[r], indptr[r + 1]
        k = b - a
        if k == 0:
            continue
        A = np.empty((k, k))
        y = np.empty(k)
        kk = r // L
        for p in range(k):
            y[p] = M[indices[a + p], c] + shift[kk]
            for q in range(k):
                A[p, q] = C[indices[a + p], indices[a + q]]
                if V.shape[0] > 0:  # the centered gauge's Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ (covlasso.gauge)
                    A[p, q] += (V[indices[a + p], kk] + V[indices[a + q], kk]) + kap[kk]
        x, ok = _chol_solve(A, y)
        if not ok:  # a support whose Gram block is singular: the minimum-norm least-squares solution
            x = np.linalg.lstsq(A, y, rcond=1e-12)[0]
        for p in range(k):
            out[a + p] = x[p]
    return out


def refit(C: np.ndarray, coef: SparseCoef, M: np.ndarray, cols: np.ndarray, *, correction=None) -> SparseCoef:
    """The relaxed (debiased) lasso: on each solution's support S the least-squares coefficients
    Ĉ_SS⁻¹ b_S (minimum-norm when Ĉ_SS is singular), same supports, from the same moments. `correction`:
    the centered gauge's (V, κ, shift) per target (:mod:`~neudep_assets.lib.covlasso.gauge`: Ĉ = C + v1ᵀ +
    1vᵀ + κ11ᵀ, b = M[:, i] + shift); None: the raw gauge."""
    L, T = coef.shape[:2]
    V, kap, shift = (np.zeros((0, T)), np.zeros(T), np.zeros(T)) if correction is None else correction
    return coef.with_data(_refit(C, M, np.asarray(cols, np.int64), coef.indptr, coef.indices, L, V, kap, shift))
