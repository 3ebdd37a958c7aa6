"""The paper's §2.2/§2.3 theory as diagnostics of computed CovLasso solutions.

Notation (paper §2.3): for a target i, Ĉ = C without row/column i, b = C[−i, i] (within) or
b = E[f_{−i} g_i] (between, `cross = E[f gᵀ]`), s = C_ii (within) or E[g_i²] (between). The CovLasso
problem is ``min_t tᵀĈt − 2bᵀt + λ‖t‖₁`` and err_i(t) = s − 2bᵀt + tᵀĈt is the mean squared
reconstruction error of the target logit.

Everything here works on the moments alone and in float64; one eigendecomposition of C serves all
targets (n = 1000 takes well under a second).

**Redundancy (§2.2, Eq. 5).** err_i(θ*(0)) = det C / det C₋ᵢ is the least-squares residual s − bᵀĈ⁺b; the
paper's determinant quotient is NaN (Remark 2). We never form determinants: C = QΛQᵀ with eigenvalues below
τ = rtol·λ_max (rtol = n·eps by default) floored at τ, C_τ = Q max(Λ, τ) Qᵀ, H = C_τ⁻¹; within,
err0_i = 1 / H_ii; between, s_i − bᵀ[(C_τ)₋ᵢ,₋ᵢ]⁻¹b by the Schur complement of H. With the dense
eigendecomposition C ⪯ C_τ ⪯ C + δI (δ = τ − min(λ_min, 0)): err0 is an upper bound on the exact residual,
above it by at most δ(1 + ‖θ*‖²). With the low-rank one (:mod:`spectral`, large heads) C ⪯ C_τ fails (the
remainder R = C − LLᵀ is dropped, not floored): err0 is within δ(1 + ‖θ*‖²) of the exact residual on either
side (δ = τ + tr R), no more. A class in an exact linear dependency (``null_leverage`` = ‖Q₀ᵀeᵢ‖² > 0) gets
err0 ≤ τ / null_leverage ≈ 0: with feature width d + 1 < n that is every class, and the exact answer.

**Sparsity (§2.3).** Theorem 3 (Eq. 13) declares class j independent of i when
|b_j| / ‖b‖_∞ < 1 − 2 ‖A_j‖₂ ‖A⁻ᵀb‖₂ |1/λ − 1/λ_max| with A = Ĉ^{1/2}, so ‖A_j‖₂² = Ĉ_jj and
‖A⁻ᵀb‖₂² = bᵀĈ⁺b = s − err0 (``thm3_norm="pinv"``) or its bound s (``"second_moment"``). It is the dual
polytope projection argument, valid for every λ > 0 and, with the pseudo-inverse, whenever b lies in the
range of Ĉ (always, for moments of one sample set); otherwise (bᵀĈ_τ⁻¹b > s) ``thm3_applicable = False``
and nothing is screened. With exact solutions it cannot be violated; it screens little (Cauchy–Schwarz
makes its right-hand side negative unless λ is close to λ_max). Conjecture 1 (Eq. 14, |b_j| < λ/2) is not
safe; its violation rate is measured. The derivation is in docs/maths.md.

**Centered gauge.** Every quantity above is per target in the centered gauge (:mod:`~neudep_assets.lib.
covlasso.gauge`): b and Ĉ_jj are the target's own, and err0 uses Ĥ = Q C_τ⁻¹ Q (:func:`_err0`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from neudep_assets.lib.analysis.moments import ONE_BLAS_THREAD
from neudep_assets.lib.analysis.screening_kernel import gauge_rows, screen_counts
from neudep_assets.lib.analysis.spectral import Spectral, check_square, numerical_rank, rtol_of, spectral
from neudep_assets.lib.covlasso.gauge import lift, rhs_shift
from neudep_assets.lib.covlasso.problem import masked
from neudep_assets.lib.covlasso.sparse import SparseCoef, coef_of, path_errors_sparse

__all__ = ["Spectral", "spectral", "numerical_rank", "redundancy", "path_errors", "eq5_violations", "screening",
           "fig3_data"]


@dataclass
class _Problem:
    """Per-target data of the CovLasso problems: b of target t is column cols[t] of M (C within,
    cross between), s its second moment, and which source index is excluded (−1 when none)."""

    M: np.ndarray  # (n, m): C or cross
    s: np.ndarray | None  # (T,) second moment of the target logit (None: unknown, between only)
    excluded: np.ndarray  # (T,) source index excluded for target t, or -1
    targets: np.ndarray  # (T,)
    gauge: str = "raw"
    shift: np.ndarray | None = None  # (T,) the centered gauge's constant added to b (covlasso.gauge)

    @cached_property
    def X_raw(self) -> np.ndarray:  # (n, T) the columns b, the excluded entry left as is (between only)
        return np.ascontiguousarray(self.M[:, self.targets])

    @cached_property
    def Mt(self) -> np.ndarray:  # (m, n): row c is b of target class c (C is symmetric: no copy within)
        return self.M if self.M.shape[0] == self.M.shape[1] and self.M is self._C else np.ascontiguousarray(self.M.T)

    _C: np.ndarray | None = None


def _problem(C: np.ndarray, cross, targets, target_second_moment, gauge: str = "raw") -> _Problem:
    n = C.shape[0]
    if cross is None:
        M = C
        m = n
    else:
        M = np.asarray(cross, dtype=np.float64)
        if M.ndim != 2 or M.shape[0] != n:
            raise ValueError(f"cross must have shape (n={n}, m), got {M.shape}")
        m = M.shape[1]
    targets = np.arange(m) if targets is None else np.asarray(targets, dtype=np.int64).ravel()
    if targets.size and (targets.min() < 0 or targets.max() >= m):
        raise ValueError(f"targets must lie in [0, {m}), got range [{targets.min()}, {targets.max()}]")
    excluded = targets.copy() if cross is None else np.where(targets < n, targets, -1).astype(np.int64)
    if cross is None:
        s = np.diag(C)[targets].copy()
    elif target_second_moment is not None:
        sm = np.asarray(target_second_moment, dtype=np.float64).ravel()
        if sm.shape[0] != m:
            raise ValueError(f"target_second_moment must have {m} entries, got {sm.shape[0]}")
        s = sm[targets].copy()
    else:
        s = None
    return _Problem(M=M, s=s, excluded=excluded, targets=targets, _C=C if cross is None else None, gauge=gauge,
                    shift=rhs_shift(M, targets, excluded, gauge))


def _quad_inv(sp: Spectral, pb: _Problem) -> np.ndarray:
    """q_t = bᵀ[(C_τ)₋ᵢ,₋ᵢ]⁻¹ b for every target, via the Schur complement of H = C_τ⁻¹.

    H − H eᵢeᵢᵀH / H_ii is the inverse of (C_τ)₋ᵢ,₋ᵢ padded with a zero row and column i, so the
    entry x_i of the padded vector does not matter. We keep the original column x = C[:, i] (or
    cross[:, i]), which lies in the range of C for moments of one sample set: then Hx has no 1/τ
    component, and nothing cancels catastrophically (zeroing x_i would put a component of size 1/τ into
    both terms of the difference).
    """
    X = pb.X_raw
    Ur, U0 = sp.h_apply(X)
    q = np.einsum("nt,nt->t", X, Ur) + np.einsum("nt,nt->t", X, U0)
    cols = np.nonzero(pb.excluded >= 0)[0]
    ex = pb.excluded[cols]
    q[cols] -= (Ur[ex, cols] + U0[ex, cols]) ** 2 / sp.h_diag()[ex]
    return q


def _err0(C: np.ndarray, sp: Spectral, pb: _Problem, cross) -> tuple[np.ndarray | None, np.ndarray]:
    """(err0, q) per target; err0 is None when s is unknown (between without target_second_moment).

    Centered gauge (C = G of the centred logits): the sources re-centred without the target span
    {Σ_{j≠i} a_j f̃_j : Σ a_j = 0}, which is what the raw formulas give on G + α11ᵀ as α → ∞, i.e. with
    Ĥ = Q G_τ⁻¹ Q (:meth:`Spectral.centred_view`). Within, 1/Ĥ_ii is the residual of f_i − m₋ᵢ, and the target
    f̃_i = ((n−1)/n)(f_i − m₋ᵢ) scales it by ((n−1)/n)²; between, the Schur complement below with Ĥ."""
    if sp.degenerate:
        q = np.zeros(pb.targets.shape[0])
        return (None if pb.s is None else pb.s.copy()), q
    if pb.gauge != "raw":
        sp = sp.centred_view()
    if cross is None:
        n = C.shape[0]
        err0 = (1.0 if pb.gauge == "raw" else ((n - 1) / n) ** 2) / sp.h_diag()[pb.targets]
        # ‖A⁺b‖² consistent with err0 (s − err0), not the separately computed q (differs by O(τ))
        q = pb.s - err0
        return err0, q
    q = _quad_inv(sp, pb)
    return (None if pb.s is None else pb.s - q), q


def _spectral_of(C, sp, rtol) -> Spectral:
    return spectral(C, rtol) if sp is None else sp


# ----------------------------------------------------------------------------------------------
# §2.2 redundancy


@ONE_BLAS_THREAD  # its products with the spectrum give other last bits on another BLAS thread count
def redundancy(C, *, cross=None, target_second_moment=None, rtol=None, spectral: Spectral | None = None,
               gauge: str = "raw") -> pd.DataFrame:
    """err_i(θ*(0)) per target class, computed stably (see the module docstring).

    Within (cross=None): one row per class of C. Between (cross = E[f gᵀ], shape (n, m)): one row per
    class i of g, regressed on all classes of f except i; needs ``target_second_moment`` = E[g_i²]
    (shape (m,)) for err0 (without it err0 and rel_err0 are NaN and only ``explained`` = bᵀĈ⁺b is
    given). ``spectral``: the eigendecomposition of C if already computed (:func:`spectral`). ``gauge``:
    "centered" for moments of centred logits, each target's sources re-centred without it (see :func:`_err0`).

    Columns: target, err0 (≥ 0 up to rounding; within the numerical resolution of the exact residual, and
    above it with the dense eigendecomposition, see the module docstring),
    rel_err0 = err0 / s (s = C_ii or E[g_i²]; the fraction of the target's second moment that the other
    logits cannot explain), second_moment (s), explained (bᵀĈ⁺b = s − err0), null_leverage (> 0: the
    source side of this class lies in an exact linear dependency; within only meaningful for the class
    itself), rank (numerical rank of C used, the same on every row), eig_floor (δ: the bound on
    ‖C_τ − C‖₂), consistent (False when err0 < −1e-8·s: moments that do not come from one sample set).
    """
    C = check_square(C, "C")
    sp = _spectral_of(C, spectral, rtol)
    pb = _problem(C, cross, None, target_second_moment, gauge)
    err0, q = _err0(C, sp, pb, cross)
    T = pb.targets.shape[0]
    s = pb.s if pb.s is not None else np.full(T, np.nan)
    e = err0 if err0 is not None else np.full(T, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(s > 0, e / s, np.nan)
    spl = sp.centred_view() if gauge != "raw" and not sp.degenerate else sp
    lev = np.where(pb.excluded >= 0, spl.null_leverage[np.maximum(pb.excluded, 0)], np.nan) if cross is not None \
        else spl.null_leverage[pb.targets]
    consistent = ~(e < -1e-8 * np.abs(s))
    return pd.DataFrame({
        "target": pb.targets, "err0": e, "rel_err0": rel, "second_moment": s, "explained": q,
        "null_leverage": lev, "rank": np.full(T, sp.rank, dtype=np.int64), "eig_floor": np.full(T, sp.slack),
        "consistent": consistent,
    })


# ----------------------------------------------------------------------------------------------
# Eq. 5 along a path


def _path_arrays(path, n: int) -> tuple[SparseCoef, np.ndarray, np.ndarray]:
    coef = coef_of(path)
    if coef.shape[2] != n:
        raise ValueError(f"path.coef must have shape (n_lambdas, n_targets, n={n}), got {coef.shape}")
    lam = np.asarray(path.lambda_abs, dtype=np.float64)
    if lam.shape != coef.shape[:2]:
        raise ValueError(f"path.lambda_abs must have shape {coef.shape[:2]}, got {lam.shape}")
    targets = np.asarray(path.targets, dtype=np.int64).ravel()
    if targets.shape[0] != coef.shape[1]:
        raise ValueError(f"path.targets has {targets.shape[0]} entries for {coef.shape[1]} targets")
    return coef, lam, targets


def _drop_excluded(coef: SparseCoef, excluded: np.ndarray) -> SparseCoef:
    """The coefficient at the excluded source must be 0; drop any such entry so b's value there is irrelevant."""
    L = coef.shape[0]
    rows = np.repeat(np.arange(coef.indptr.shape[0] - 1), np.diff(coef.indptr))
    at_excl = coef.indices == excluded[rows // L]
    if not at_excl.any():
        return coef
    keep = ~at_excl
    counts = np.bincount(rows[keep], minlength=coef.indptr.shape[0] - 1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SparseCoef(indptr, coef.indices[keep], coef.data[keep], coef.shape)


def path_errors(C, path, *, cross=None, target_second_moment=None) -> np.ndarray:
    """err_i(θ*(λ)) = s − 2bᵀt + tᵀĈt per (λ, target), shape (n_lambdas, n_targets), from C and the
    sparse coefficients (O(nnz²) per solution)."""
    C = check_square(C, "C")
    coef, _, targets = _path_arrays(path, C.shape[0])
    gauge = getattr(path, "gauge", "raw")
    pb = _problem(C, cross, targets, target_second_moment, gauge)
    if pb.s is None:
        raise ValueError("between-model errors need target_second_moment = E[g_i²]")
    return path_errors_sparse(C, lift(_drop_excluded(coef, pb.excluded), pb.excluded, gauge), pb.M, targets, pb.s)


def eq5_violations(C, path, *, cross=None, target_second_moment=None, err0=None, rtol=1e-9,
                   rank_rtol=None, err: np.ndarray | None = None, spectral: Spectral | None = None) -> pd.DataFrame:
    """Check Eq. 5 along every computed path: err_i(θ*(λ)) non-decreasing in λ and within
    [err_i(θ*(0)), s].

    A violation is a step where err decreases by more than ``rtol·s`` as λ grows, a value above
    s + rtol·s, or a value below err0 − rtol·s − δ(1 + ‖t‖²) (δ: the eigenvalue floor of
    :func:`redundancy`, which makes its err0 an upper bound on the exact residual; the slack keeps the
    lower bound rigorous). ``err0`` may be given (array over the path's targets or over all classes,
    or the DataFrame of :func:`redundancy`), and ``err`` (:func:`path_errors`) and ``spectral``, to
    avoid recomputing them.

    Columns per target: target, n_violations, max_violation (largest violation / s, 0 when none),
    n_monotone_violations, n_lower_violations, n_upper_violations, err_min_lambda, err_max_lambda.
    """
    C = check_square(C, "C")
    n = C.shape[0]
    coef, lam, targets = _path_arrays(path, n)
    gauge = getattr(path, "gauge", "raw")
    pb = _problem(C, cross, targets, target_second_moment, gauge)
    if err is None:
        err = path_errors(C, path, cross=cross, target_second_moment=target_second_moment)
    s = pb.s
    if s is None:
        raise ValueError("between-model errors need target_second_moment = E[g_i²]")
    sp = _spectral_of(C, spectral, rank_rtol)
    slack = sp.slack

    m_all = n if cross is None else np.asarray(cross).shape[1]
    if err0 is None:
        red = redundancy(C, cross=cross, target_second_moment=target_second_moment, rtol=rank_rtol, spectral=sp,
                         gauge=gauge)
        e0 = red["err0"].to_numpy()[targets]
    elif isinstance(err0, pd.DataFrame):
        e0 = err0.set_index("target").loc[targets, "err0"].to_numpy()
        if "eig_floor" in err0:
            slack = float(err0["eig_floor"].iloc[0])
    else:
        e0 = np.asarray(err0, dtype=np.float64).ravel()
        if e0.shape[0] == m_all and m_all != targets.shape[0]:
            e0 = e0[targets]
        elif e0.shape[0] != targets.shape[0]:
            raise ValueError(f"err0 has {e0.shape[0]} entries; expected {targets.shape[0]} (targets) or {m_all}")

    tol = rtol * np.abs(s)  # (T,)
    sq = coef.with_data(coef.data ** 2)
    tnorm2 = np.add.reduceat(np.append(sq.data, 0.0), coef.indptr[:-1]) * (np.diff(coef.indptr) > 0)
    L, T = lam.shape
    tnorm2 = tnorm2.reshape(T, L).T  # (L, T)
    order = np.argsort(lam, axis=0, kind="stable")
    e = np.take_along_axis(err, order, axis=0)  # (L, T) by increasing λ
    tn = np.take_along_axis(tnorm2, order, axis=0)
    drop = e[:-1] - e[1:]  # > 0: err decreased while λ increased
    mono = np.where(drop > tol, drop, 0.0)
    up = e - s
    up = np.where(up > tol, up, 0.0)
    low_gap = (e0 - tol - slack * (1.0 + tn)) - e
    low = np.where(low_gap > 0, e0 - e, np.nan)
    n_mono, n_up, n_low = (drop > tol).sum(0), (e - s > tol).sum(0), (low_gap > 0).sum(0)
    scale = np.where(np.abs(s) > 0, np.abs(s), 1.0)
    worst = np.maximum(np.maximum(mono.max(0, initial=0.0), up.max(0, initial=0.0)),
                       np.where(n_low > 0, np.nanmax(np.where(low_gap > 0, low, -np.inf), axis=0, initial=-np.inf),
                                0.0))
    n_all = n_mono + n_up + n_low
    return pd.DataFrame({
        "target": targets.astype(np.int64), "n_violations": n_all.astype(np.int64),
        "max_violation": np.where(n_all > 0, worst / scale, 0.0),
        "n_monotone_violations": n_mono.astype(np.int64), "n_lower_violations": n_low.astype(np.int64),
        "n_upper_violations": n_up.astype(np.int64), "err_min_lambda": e[0], "err_max_lambda": e[-1],
    })


# ----------------------------------------------------------------------------------------------
# §2.3 screening rules


def _screen_setup(C, path, cross, target_second_moment, thm3_norm, rank_rtol, sp=None, only=None):
    C = check_square(C, "C")
    n = C.shape[0]
    coef, lam, targets = _path_arrays(path, n)
    if thm3_norm not in ("pinv", "second_moment"):
        raise ValueError(f"thm3_norm must be 'pinv' or 'second_moment', got {thm3_norm!r}")
    tg = targets if only is None else targets[only]
    pb = _problem(C, cross, tg, target_second_moment, getattr(path, "gauge", "raw"))
    sp = _spectral_of(C, sp, rank_rtol)
    _, q = _err0(C, sp, pb, cross)
    # within: b is in the range of Ĉ whenever C is PSD; a clearly negative eigenvalue (beyond the
    # resolution τ) means C is no second-moment matrix and the problem can be unbounded below
    applicable = np.full(tg.shape[0], sp.min_eig >= -max(sp.tau, 0.0))
    if pb.s is not None:
        # bᵀĈ⁺b ≤ s for moments of one sample set; beyond it b has a component outside range(Ĉ)
        applicable &= q <= pb.s * (1 + 1e-8) + 1e-300
        q = np.minimum(q, pb.s)
        if thm3_norm == "second_moment":
            q = pb.s.copy()
    elif thm3_norm == "second_moment":
        raise ValueError("thm3_norm='second_moment' needs target_second_moment for between-model screening")
    q = np.maximum(q, 0.0)
    return C, coef, lam, targets, pb, q, applicable


def _rules(lam_t, bmax, ratio, K, applicable):
    """Boolean (n, T) masks of the Theorem-3 and Conjecture-1 screens at λ = lam_t (per target),
    plus the Theorem-3 threshold."""
    lmax = 2.0 * bmax
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(1.0 / lam_t - 1.0 / lmax)
        thr = 1.0 - 2.0 * K * gap[None, :]
        lrat = np.where(lmax > 0, lam_t / lmax, np.inf)
    zero_b = bmax <= 0  # target uncorrelated with every source: t = 0 solves it for every λ
    thr = np.where(zero_b[None, :], np.inf, thr)
    thr = np.where(applicable[None, :], thr, -np.inf)
    thm3 = ratio < thr
    conj = ratio < lrat[None, :]
    return thm3, conj, thr, lrat


def screening(C, path, *, cross=None, target_second_moment=None, coef_tol: float = 0.0,
              thm3_norm: str = "pinv", rank_rtol=None, spectral: Spectral | None = None) -> pd.DataFrame:
    """Theorem 3 (safe rule) and Conjecture 1 (heuristic) against the computed solutions.

    One row per (lambda_index, target): lambda_abs, lambda_ratio (λ/λ_max with λ_max = 2‖b‖_∞),
    n_candidates (sources), n_nonzero (|coef| > coef_tol), thm3_screened / conj1_screened (sources
    each rule declares independent), thm3_violations / conj1_violations (of those, how many have
    |coef| > coef_tol in the solution), thm3_max_violating_coef / conj1_max_violating_coef (largest
    such |coef|, 0 when none), thm3_applicable (False: b outside the range of Ĉ, nothing screened).
    See the module docstring for how ‖A⁻ᵀb‖ is evaluated (``thm3_norm``). O(L·T·n) time, O(L·T) memory
    beyond C and the coefficients.
    """
    C, coef, lam, targets, pb, q, applicable = _screen_setup(
        C, path, cross, target_second_moment, thm3_norm, rank_rtol, spectral)
    L, T = lam.shape
    n = C.shape[0]
    ci, cf = np.zeros((5, L, T), np.int64), np.zeros((3, L, T))
    step = T if pb.gauge == "raw" else max(1, 2 ** 24 // max(n, 1))  # centered: per-target rows, ≤ 256 MB a block
    for a in range(0, T, step):
        b = min(a + step, T)
        sub = pb if (a, b) == (0, T) else _problem(C, cross, targets[a:b], target_second_moment, pb.gauge)
        Mt, cols, sqd = gauge_rows(C, sub)
        ip = coef.indptr[a * L:b * L + 1]
        i_, f_ = screen_counts(Mt, cols, sub.excluded, sqd, np.sqrt(q[a:b]), np.ascontiguousarray(lam[:, a:b]),
                               applicable[a:b], ip - ip[0], coef.indices[ip[0]:ip[-1]], coef.data[ip[0]:ip[-1]],
                               float(coef_tol))
        ci[:, :, a:b], cf[:, :, a:b] = i_, f_
    n_cand = n - (pb.excluded >= 0).astype(np.int64)
    return pd.DataFrame({
        "lambda_index": np.repeat(np.arange(L, dtype=np.int64), T), "target": np.tile(targets, L),
        "lambda_abs": lam.ravel(), "lambda_ratio": cf[2].ravel(), "n_candidates": np.tile(n_cand, L),
        "n_nonzero": ci[0].ravel(), "thm3_screened": ci[1].ravel(), "thm3_violations": ci[2].ravel(),
        "conj1_screened": ci[3].ravel(), "conj1_violations": ci[4].ravel(),
        "thm3_max_violating_coef": cf[0].ravel(), "conj1_max_violating_coef": cf[1].ravel(),
        "thm3_applicable": np.tile(applicable, L),
    })


def fig3_data(C, path, target_pos, lambda_index, *, cross=None, target_second_moment=None,
              thm3_norm: str = "pinv", rank_rtol=None, spectral: Spectral | None = None) -> pd.DataFrame:
    """The data of the paper's Fig. 3 for one target (position ``target_pos`` in ``path.targets``) and
    one λ: per source j, corr_ratio = |E[f_i f_j]| / max_s |E[f_i f_s]| (between: |E[f_j g_i]| / max),
    coef = θ_j, abs_coef, lambda_ratio = λ/λ_max (the Conjecture-1 bar), thm3_threshold (the right-hand
    side of Eq. 13), conj1_screened, thm3_screened."""
    n_t = coef_of(path).shape[1]
    t = int(target_pos)
    if not 0 <= t < n_t:
        raise ValueError(f"target_pos {t} out of range for {n_t} targets")
    C, coef, lam, targets, pb, q, applicable = _screen_setup(
        C, path, cross, target_second_moment, thm3_norm, rank_rtol, spectral, only=[t])
    li = int(lambda_index)
    if not 0 <= li < lam.shape[0]:
        raise ValueError(f"lambda_index {li} out of range for {lam.shape[0]} lambdas")
    n = C.shape[0]
    Mt, _, sqd = gauge_rows(C, pb)
    absb = np.abs(masked(np.ascontiguousarray(Mt[[0] if pb.gauge != "raw" else pb.targets].T), pb.excluded))  # (n, 1)
    bmax = absb.max(axis=0) if n else np.zeros(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bmax > 0, absb / bmax, 0.0)
    K = sqd[0][:, None] * np.sqrt(q)[None, :]
    thm3, conj, thr, lrat = _rules(lam[li, t:t + 1], bmax, ratio, K, applicable)
    cand = np.ones(n, dtype=bool)
    if pb.excluded[0] >= 0:
        cand[pb.excluded[0]] = False
    src = np.nonzero(cand)[0]
    dense = np.zeros(n)
    idx, val = coef.row(li, t)
    dense[idx] = val
    c = dense[src]
    return pd.DataFrame({
        "target": np.full(src.shape[0], targets[t], dtype=np.int64), "source": src,
        "corr_ratio": ratio[src, 0], "coef": c, "abs_coef": np.abs(c),
        "lambda_ratio": np.full(src.shape[0], float(lrat[0])), "thm3_threshold": thr[src, 0],
        "conj1_screened": conj[src, 0], "thm3_screened": thm3[src, 0],
    })
