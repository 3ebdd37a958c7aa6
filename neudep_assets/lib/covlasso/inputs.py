"""The CovLasso solver's input checks (private): every problem is refused before any work, with the
argument named."""

from __future__ import annotations

import math

import numpy as np

_SYM_RTOL = 1e-6  # C may come from a float32 computation; it is symmetrised after the check
METHODS = ("auto", "homotopy", "working_set")


def _as_matrix(name: str, x, step: int = 1024) -> np.ndarray:
    """x as a 2-D float64 array (no copy when it is one), its finiteness checked a block of rows at a
    time (no n² temporary)."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array: {e}") from None
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    bad = sum(int(a[i:i + step].size - np.count_nonzero(np.isfinite(a[i:i + step])))
              for i in range(0, a.shape[0], step))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN/Inf entries")
    return a


def _symmetric_c(C: np.ndarray, step: int = 1024) -> np.ndarray:
    """C checked symmetric (to _SYM_RTOL) and PSD on its diagonal, block by block: C itself when it is
    exactly symmetric (second_moment's is), else symmetrised (one n² copy)."""
    tiny = np.finfo(float).tiny
    blocks = range(0, C.shape[0], step)
    scale = max((float(np.max(np.abs(C[i:i + step]))) for i in blocks), default=0.0)
    asym = max((float(np.max(np.abs(C[i:i + step] - C[:, i:i + step].T))) for i in blocks), default=0.0)
    if asym > _SYM_RTOL * max(scale, tiny):
        raise ValueError(
            f"C is not symmetric: max |C - C.T| = {asym:.3g} exceeds {_SYM_RTOL:g} x max|C| = {scale:.3g}"
        )
    diag = np.diag(C)
    if np.any(diag < -_SYM_RTOL * max(scale, tiny)):
        j = int(np.argmin(diag))
        raise ValueError(f"C is not positive semidefinite: C[{j},{j}] = {diag[j]:.3g} < 0")
    if asym == 0.0:
        return C if C.flags.c_contiguous else np.ascontiguousarray(C)
    S = C + C.T
    S *= 0.5
    return S


def validate(C, lambdas, cross, targets, lambda_mode, tol):
    C = _as_matrix("C", C)
    n = C.shape[0]
    if C.shape != (n, n):
        raise ValueError(f"C must be square, got shape {C.shape}")
    if n < 2:
        raise ValueError(f"C must have at least 2 classes, got {n}")
    C = _symmetric_c(C)

    if cross is not None:
        cross = _as_matrix("cross", cross)
        if cross.shape[0] != n:
            raise ValueError(
                f"cross must have shape (n, m) with n = C.shape[0] = {n}, got {cross.shape}"
            )
        n_tgt_space = cross.shape[1]
    else:
        n_tgt_space = n

    if lambda_mode not in ("relative", "absolute"):
        raise ValueError(f"lambda_mode must be 'relative' or 'absolute', got {lambda_mode!r}")
    lam = np.atleast_1d(np.asarray(lambdas, dtype=np.float64))
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"lambdas must be a non-empty 1-D sequence, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ValueError(f"lambdas contains NaN/Inf: {lam}")
    if np.any(lam < 0):
        raise ValueError(f"lambdas must be >= 0, got {lam[lam < 0][:5]}")

    if targets is None:
        tg = np.arange(n_tgt_space, dtype=np.int64)
    else:
        tg_raw = np.atleast_1d(np.asarray(targets))
        if tg_raw.ndim != 1 or tg_raw.size == 0:
            raise ValueError(f"targets must be a non-empty 1-D sequence of indices, got {targets!r}")
        if tg_raw.dtype.kind not in "iu":
            if tg_raw.dtype.kind == "f" and np.all(tg_raw == np.round(tg_raw)):
                tg_raw = tg_raw.astype(np.int64)
            else:
                raise ValueError(f"targets must be integer class indices, got dtype {tg_raw.dtype}")
        tg = tg_raw.astype(np.int64)
        if np.any(tg < 0) or np.any(tg >= n_tgt_space):
            raise ValueError(
                f"targets must lie in [0, {n_tgt_space}), got {tg[(tg < 0) | (tg >= n_tgt_space)][:5]}"
            )
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    return C, lam, cross, tg


def check_device(device) -> str:
    if device is None:
        return "cpu"
    d = str(device)
    if d == "cpu":
        return d
    import torch

    try:
        kind = torch.device(d.removeprefix("torch:")).type
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be None, 'cpu', 'cuda[:k]' or 'torch:cpu', got {device!r}: {e}") from None
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"device {device!r}: the torch path needs float64 (cuda, or torch:cpu for testing)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return d
