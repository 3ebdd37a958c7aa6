"""Uncentered second moments of logits (paper Remark 1: raw logits, no centering or scaling)."""

from __future__ import annotations

import os

import numpy as np
from threadpoolctl import threadpool_limits


# LAPACK's eigensolvers, like a multi-threaded gemm, give other last bits on another BLAS thread count: the
# spectra, ranks and diagnostics of an analysis are computed on one, so a Dask worker and a CLI store the same
ONE_BLAS_THREAD = threadpool_limits.wrap(limits=1, user_api="blas")


class LogitsError(ValueError):
    """Logits that cannot be used (non-finite values, misaligned samples); names the culprit."""


def check_finite(logits: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(logits)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise LogitsError(f"{what}: {int(bad.sum())} non-finite logits (first at sample {rows[0]}, class {cols[0]})")


def second_moment(f: np.ndarray, g: np.ndarray | None = None, *, chunk: int = 8192, block: int | None = None,
                  workers: int | None = None) -> np.ndarray:
    """E[f fᵀ] (or E[f gᵀ] when `g` is given) in float64, accumulated in chunks of samples into one
    (n, m) array in place, one block of output columns at a time (gemm into a block-sized temporary):
    the peak is the result plus one chunk plus one (n, block) block per worker (default block: an
    eighth of the columns, between 64 and 2048). E[f fᵀ] is exactly symmetric (only its upper triangle
    is accumulated, then copied down).

    The same bits whatever the machine's thread count (a Dask worker on one thread, a CLI on two): a
    multi-threaded gemm splits its sums by the thread count, so each block is one single-threaded gemm,
    and `workers` threads (default: the CPU count) compute the blocks side by side.

    numpy's BLAS (64-bit indices), not scipy's ``dsyrk``: the latter (32-bit OpenBLAS 0.3.30) crashes
    (SIGSEGV) at n = 21,841 classes."""
    from concurrent.futures import ThreadPoolExecutor

    if g is not None and len(g) != len(f):
        raise LogitsError(f"cross moment needs the same samples: {len(f)} vs {len(g)} rows")
    n = f.shape[1]
    m = n if g is None else g.shape[1]
    out = np.zeros((n, m), dtype=np.float64)
    block = block or max(64, min(2048, m // 8))
    blocks = [(j0, min(j0 + block, m)) for j0 in range(0, m, block)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(blocks)))
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(f), chunk):
            a = np.asarray(f[start:start + chunk], dtype=np.float64)
            b = a if g is None else np.asarray(g[start:start + chunk], dtype=np.float64)

            def add(j: tuple[int, int], a=a, b=b) -> None:
                rows = j[1] if g is None else n  # within: the upper triangle (rows ≤ the block's last column)
                out[:rows, j[0]:j[1]] += a[:, :rows].T @ b[:, j[0]:j[1]]
            list(pool.map(add, blocks))  # disjoint column blocks: no two threads write the same entries
    out /= max(len(f), 1)
    if g is None:
        for j0, j1 in blocks:  # the lower triangle from the upper, one block of columns at a time
            out[j1:, j0:j1] = out[j0:j1, j1:].T
            d = out[j0:j1, j0:j1]
            out[j0:j1, j0:j1] = np.triu(d) + np.triu(d, 1).T
    return out


@ONE_BLAS_THREAD
def spectrum_summary(C: np.ndarray, rtol: float | None = None) -> dict[str, float | int]:
    """Smallest/largest eigenvalue and numerical rank (eigenvalues above rtol·max, numpy's default rtol)."""
    w = np.linalg.eigvalsh(C)
    rtol = C.shape[0] * np.finfo(np.float64).eps if rtol is None else rtol
    return {"min_eig": float(w[0]), "max_eig": float(w[-1]), "rank": int((w > rtol * max(w[-1], 0.0)).sum())}


@ONE_BLAS_THREAD
def psd_report(C: np.ndarray) -> dict[str, float]:
    """Asymmetry and smallest eigenvalue of C, relative to its largest entry (0 and ≥ 0 for a valid C)."""
    scale = float(np.abs(C).max()) or 1.0
    return {"relative_asymmetry": float(np.abs(C - C.T).max()) / scale,
            "relative_min_eigenvalue": float(np.linalg.eigvalsh(0.5 * (C + C.T))[0]) / scale}


def check_aligned(ids_f: np.ndarray, ids_g: np.ndarray, name_f: str, name_g: str) -> None:
    """Between-model moments need the same samples in the same order."""
    if ids_f.shape != ids_g.shape or not np.array_equal(ids_f, ids_g):
        n_diff = "different counts" if ids_f.shape != ids_g.shape else f"{int((ids_f != ids_g).sum())} differ"
        raise LogitsError(f"logits of {name_f} and {name_g} are not of the same samples in the same order ({n_diff})")
