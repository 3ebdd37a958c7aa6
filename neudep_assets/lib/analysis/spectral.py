"""The eigendecomposition of a second-moment matrix C, with eigenvalues below numpy's rank tolerance
floored (see :mod:`neudep_assets.lib.analysis.theory` for why and what it guarantees)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = np.finfo(np.float64).eps


def _defaultrtol_of(n: int) -> float:
    return max(n, 1) * _EPS


def rtol_of(n: int, rtol) -> float:
    if rtol is None:
        return _defaultrtol_of(n)
    r = float(rtol)
    if not (r > 0 and np.isfinite(r)):
        raise ValueError(f"rtol must be a positive number, got {rtol!r}")
    return r


def numerical_rank(C: np.ndarray, rtol: float | None = None) -> int:
    """Number of eigenvalues of the symmetric PSD matrix C above rtol·λ_max (rtol = n·eps by default,
    numpy's ``matrix_rank`` rule on the singular values of C)."""
    C = check_square(C, "C")
    w = np.linalg.eigvalsh(C)
    rtol = rtol_of(C.shape[0], rtol)
    top = max(float(w[-1]), 0.0) if w.size else 0.0
    return int((w > rtol * top).sum()) if top > 0 else 0


@dataclass
class Spectral:
    """The eigendecomposition of C split at the floor τ.

    H = C_τ⁻¹ = H_r + P₀/τ with H_r = Q_r Λ_r⁻¹ Q_rᵀ and P₀ = Q₀Q₀ᵀ. The two parts are never added
    into one matrix: H's entries are of size 1/τ, so every product with the assembled H would lose the
    H_r part to rounding (absolute error eps·‖H‖ = eps/τ, about 0.01 for τ ≈ 1e-14).
    """

    Qr: np.ndarray  # (n, r) eigenvectors above the floor
    wr: np.ndarray  # (r,) their eigenvalues
    Q0: np.ndarray  # (n, n − r) eigenvectors at or below the floor
    tau: float  # eigenvalue floor (rtol · λ_max)
    slack: float  # δ = ‖C_τ − C‖₂ = tau − min(λ_min, 0) if anything was floored, else 0
    min_eig: float

    @property
    def rank(self) -> int:
        return int(self.wr.shape[0])

    @property
    def degenerate(self) -> bool:  # C has no positive eigenvalue
        return self.tau <= 0

    @property
    def null_leverage(self) -> np.ndarray:  # ‖Q₀ᵀ e_i‖²
        return (self.Q0 ** 2).sum(axis=1)

    def h_diag(self) -> np.ndarray:
        """diag(C_τ⁻¹)."""
        return ((self.Qr ** 2) / self.wr).sum(axis=1) + self.null_leverage / self.tau

    def h_apply(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H_r X, P₀ X / τ), kept apart (see the class docstring)."""
        return self.Qr @ ((self.Qr.T @ X) / self.wr[:, None]), self.Q0 @ (self.Q0.T @ X) / self.tau


def spectral(C: np.ndarray, rtol: float | None) -> Spectral:
    """Memory: C plus its eigenvectors (LAPACK's MRRR driver, O(n) workspace: numpy's divide-and-conquer
    would add 2n² floats); Qr and Q0 are views of the one eigenvector matrix."""
    from scipy.linalg import eigh

    n = C.shape[0]
    w, Q = eigh(C, driver="evr", check_finite=False) if n else (np.zeros(0), np.zeros((0, 0)))
    rtol = rtol_of(n, rtol)
    top = max(float(w[-1]), 0.0) if n else 0.0
    tau = rtol * top
    k = int(np.searchsorted(w, tau, side="right"))  # ascending: the floored eigenvalues are a prefix
    slack = float(tau - min(float(w[0]), 0.0)) if (n and k and top > 0) else 0.0
    return Spectral(Qr=Q[:, k:], wr=w[k:], Q0=Q[:, :k], tau=tau, slack=slack,
                     min_eig=float(w[0]) if n else 0.0)


def check_square(C, what: str) -> np.ndarray:
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {C.shape}")
    if not np.isfinite(C).all():
        raise ValueError(f"{what} has non-finite entries")
    if _symmetric(C):  # e.g. second_moment's: used as it is (callers never write into C)
        return C
    S = C + C.T  # one n² temporary, halved in place
    S *= 0.5
    return S


def _symmetric(C: np.ndarray, step: int = 1024) -> bool:
    """C == Cᵀ exactly, compared one block of rows at a time (no n² temporary)."""
    return all(np.array_equal(C[i:i + step], C[:, i:i + step].T) for i in range(0, C.shape[0], step))


