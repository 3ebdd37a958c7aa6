"""The eigendecomposition of a second-moment matrix C, with eigenvalues below numpy's rank tolerance
floored (see :mod:`neudep_assets.lib.analysis.theory` for why and what it guarantees).

Two ways to get it. ``dense``: LAPACK's eigh of all of C, O(n³) and n² more floats. ``lowrank``: when C
has numerical rank r ≪ n (a network whose feature width d is below its class count: ImageNet-21k heads
have d ≈ 768–1024 for 21,841 classes), a pivoted Cholesky C ≈ LLᵀ stopped at the floor, a thin QR of L
and the eigh of an r × r matrix give the eigenpairs above the floor in O(n r²) time and O(n r) memory;
the null space stays implicit (Q₀Q₀ᵀ = I − Q_rQ_rᵀ). The remainder R = C − LLᵀ is bounded, not estimated:
for C ⪰ 0, R is a Schur complement, R ⪰ 0, so ‖R‖₂ ≤ tr R = Σᵢ (C_ii − ‖Lᵢ‖²), the residual diagonal the
factorisation stops on (≤ n·rtol·max C_ii). That bound goes into the slack δ = τ + tr R ≥ ‖C_τ − C‖₂.
Whether C ⪰ 0 holds is checked with a Lanczos *estimate* of λ_min(R) (ARPACK, tol 1e-3: an estimate, not a
bound); a clearly negative one is reported as ``min_eig`` (then Theorem 3 is not applied) and widens δ by
(n − 1)·|λ_min(R)|, which is again only an estimate. Unlike the dense path, C ⪯ C_τ does not hold here (R is
dropped, not floored): err0 is within δ(1 + ‖θ‖²) of the exact residual on either side, not an upper bound.
``auto`` takes lowrank above 4,096 classes when the rank is below n/8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neudep_assets.lib.analysis.moments import ONE_BLAS_THREAD

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


@ONE_BLAS_THREAD
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
    Q0: np.ndarray | None  # (n, n − r) eigenvectors at or below the floor; None: implicit, I − QrQrᵀ
    tau: float  # eigenvalue floor (rtol · λ_max)
    slack: float  # δ ≥ ‖C_τ − C‖₂: dense, tau − min(λ_min, 0) if anything was floored, else 0; lowrank,
    #               tau + tr(C − LLᵀ) (a bound for C ⪰ 0; see the module docstring otherwise)
    min_eig: float  # dense: λ_min(C); lowrank: min(0, a Lanczos estimate of λ_min(C − LLᵀ)), an estimate
    method: str = "dense"
    centred: bool = False  # H is Q C_τ⁻¹ Q (Q = I − 11ᵀ/n): see :meth:`centred_view`

    @property
    def rank(self) -> int:
        return int(self.wr.shape[0])

    @property
    def degenerate(self) -> bool:  # C has no positive eigenvalue
        return self.tau <= 0

    def centred_view(self) -> "Spectral":
        """The same split with H replaced by Ĥ = Q C_τ⁻¹ Q, Q = I − 11ᵀ/n, for the moment G of centred
        logits (G1 = 0: the all-ones direction is in the null space). Ĥ is the limit of (C_τ + α11ᵀ)⁻¹ as
        α → ∞: the inverse of C_τ on the subspace 1⊥, i.e. what the centered gauge's per-target problems
        (sources re-centred without the target, :mod:`~neudep_assets.lib.covlasso.gauge`) need for err0.
        The eigenvectors lose their component along 1 (exactly where they are not ⊥ 1: the null space)."""
        if self.centred:
            return self
        Qr = self.Qr - self.Qr.mean(axis=0)
        Q0 = None if self.Q0 is None else self.Q0 - self.Q0.mean(axis=0)
        return Spectral(Qr=Qr, wr=self.wr, Q0=Q0, tau=self.tau, slack=self.slack, min_eig=self.min_eig,
                        method=self.method, centred=True)

    @property
    def null_leverage(self) -> np.ndarray:  # ‖Q₀ᵀ e_i‖² (centred: ‖Q₀ᵀ Q e_i‖²)
        if self.Q0 is None:
            n = self.Qr.shape[0]
            top = 1.0 - 1.0 / n if self.centred else 1.0
            return np.clip(top - (self.Qr ** 2).sum(axis=1), 0.0, 1.0)
        return (self.Q0 ** 2).sum(axis=1)

    def h_diag(self) -> np.ndarray:
        """diag(C_τ⁻¹)."""
        return ((self.Qr ** 2) / self.wr).sum(axis=1) + self.null_leverage / self.tau

    def h_apply(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H_r X, P₀ X / τ), kept apart (see the class docstring)."""
        P = self.Qr.T @ X
        if self.Q0 is None:  # projected twice: once leaves eps·‖X‖ along Q_r, which 1/τ would amplify
            Y = (X - X.mean(axis=0)) - self.Qr @ P if self.centred else X - self.Qr @ P
            return self.Qr @ (P / self.wr[:, None]), (Y - self.Qr @ (self.Qr.T @ Y)) / self.tau
        return self.Qr @ (P / self.wr[:, None]), self.Q0 @ (self.Q0.T @ X) / self.tau


SPECTRAL_METHODS = ("auto", "dense", "lowrank")
LOWRANK_MIN_N = 4096  # below, dense eigh takes seconds; above, try the low-rank path
LOWRANK_MAX_FRACTION = 8  # low rank means r ≤ n / 8 (then the low-rank path costs ≤ 1/64 of n³)


@ONE_BLAS_THREAD
def spectral(C: np.ndarray, rtol: float | None, method: str = "auto") -> Spectral:
    """The eigendecomposition of C split at τ = rtol·λ_max (rtol = n·eps by default); `method` as in the
    module docstring. ``lowrank`` on a C of rank above n/8 raises."""
    if method not in SPECTRAL_METHODS:
        raise ValueError(f"spectral method must be one of {SPECTRAL_METHODS}, got {method!r}")
    n = C.shape[0]
    if method == "lowrank" or (method == "auto" and n > LOWRANK_MIN_N):
        sp = _lowrank(C, rtol_of(n, rtol), max(n // LOWRANK_MAX_FRACTION, 1))
        if sp is not None:
            return sp
        if method == "lowrank":
            raise ValueError(f"spectral method 'lowrank': C ({n} × {n}) has numerical rank above n/"
                             f"{LOWRANK_MAX_FRACTION}; use 'dense'")
    return _dense(C, rtol)


def _dense(C: np.ndarray, rtol: float | None) -> Spectral:
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


def _pivoted_cholesky(C: np.ndarray, tol: float, max_rank: int) -> np.ndarray | None:
    """L (n, k) with C ≈ LLᵀ, greedy diagonal pivoting, stopped when every residual diagonal entry is
    ≤ tol; None if that takes more than max_rank columns. Hand-written: LAPACK's dpstrf works on (and
    would need a copy of) all of C; this reads one row of C per column, O(n k) memory."""
    n = C.shape[0]
    d = np.diag(C).astype(np.float64)
    Lt = np.empty((min(max_rank, n), n))  # rows are the columns of L (contiguous)
    for k in range(Lt.shape[0]):
        p = int(np.argmax(d))
        if d[p] <= tol:
            return Lt[:k].T
        row = C[p] - Lt[:k, p] @ Lt[:k]
        row /= np.sqrt(d[p])
        Lt[k] = row
        d -= row * row
        d[p] = 0.0
    return Lt.T if d.max() <= tol else None


def _remainder_min(C: np.ndarray, L: np.ndarray) -> float | None:
    """A Lanczos estimate (ARPACK, tol 1e-3; not a bound) of the smallest eigenvalue of R = C − LLᵀ, to check
    that C is PSD; None if it does not converge."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    n = C.shape[0]
    if n < 3:
        return float(np.linalg.eigvalsh(C - L @ L.T)[0])
    op = LinearOperator((n, n), matvec=lambda x: C @ x - L @ (L.T @ x), dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)  # fixed: the same C gives the same numbers
    try:
        w = eigsh(op, k=1, which="SA", v0=v0, tol=1e-3, maxiter=1000, return_eigenvectors=False)
    except ArpackNoConvergence:
        return None
    return float(w.min())


def _lowrank(C: np.ndarray, rtol: float, max_rank: int) -> Spectral | None:
    """The split eigendecomposition from a pivoted Cholesky; None when C's rank exceeds max_rank."""
    from scipy.linalg import eigh, qr

    n = C.shape[0]
    top_diag = float(np.max(np.diag(C))) if n else 0.0
    if top_diag <= 0:
        return None  # C = 0 (or not PSD): the dense path reports it
    # rtol·max C_ii ≤ rtol·λ_max = τ: the factor keeps every direction above the floor
    L = _pivoted_cholesky(C, rtol * top_diag, max_rank)
    if L is None:
        return None
    Q, R = qr(L, mode="economic", check_finite=False)
    w, V = eigh(R @ R.T, check_finite=False)  # the eigenvalues of LLᵀ, ascending
    top = max(float(w[-1]), 0.0) if w.size else 0.0
    tau = rtol * top
    keep = w > tau
    r_min = _remainder_min(C, L)
    if r_min is None:
        return None  # C's PSD-ness could not be checked: the dense path
    trace_r = float(np.abs(np.diag(C) - np.einsum("ij,ij->i", L, L)).sum())  # ≥ tr R ≥ ‖R‖₂ when R ⪰ 0
    # C = LLᵀ + R and C_τ = Q_r Λ_r Q_rᵀ + τP₀ (r ≤ n/8: the null space is never empty), so
    # ‖C_τ − C‖₂ ≤ τ + ‖R‖₂; for a symmetric R, λ_max(R) ≤ tr R + (n − 1)|λ_min(R)|
    not_psd = max(-r_min, 0.0) if r_min < -tau else 0.0
    return Spectral(Qr=Q @ V[:, keep], wr=w[keep], Q0=None, tau=tau, slack=tau + trace_r + (n - 1) * not_psd,
                    min_eig=min(r_min, 0.0), method="lowrank")


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


