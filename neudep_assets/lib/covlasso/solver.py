"""Covariance Lasso (paper §2.1, Eq. 2): every target class, a whole λ path, exact and certified.

For a target class i of a model with logits f (n classes) and C = E[f fᵀ] (uncentered),

    within:   min_t  tᵀĈt − 2bᵀt + λ‖t‖₁,   Ĉ = C without row/column i,  b = C[−i, i]
    between:  the same with b = E[f_{−i} g_i] = cross[−i, i]  (f's class i is not a source, Eq. 4)

which is Eq. 2 with θ = (t, θ_i = −1). Above λ_max = 2‖b‖_∞ the solution is t = 0.

Algorithm
---------
Each target is solved by an exact homotopy (LARS with the lasso modification, run on the Gram
matrix C itself): the solution path is piecewise linear in λ; the solver walks it from λ_max
down, keeping a Cholesky factor of the active block that is updated at each breakpoint (a row
appended when a class enters, Givens rotations when one leaves), and stops *exactly* at every
requested λ. There it re-solves the active block, refines once, and certifies the answer: the
KKT violation is recomputed from C. Problems whose certificate fails (degenerate active sets on
rank-deficient C, ties, ill-conditioned blocks) are repaired by a working-set coordinate descent
plus an active-set Newton step, certified again, and the path restarts from there. Finally the
certificate is recomputed once more from C and the returned coefficients alone (independently
of the kernel's state); anything it rejects is repaired, and what cannot be repaired is flagged
(``status`` = 2) and warned about, never hidden.

A homotopy step costs O(n·k), so at large n most of the work is moving the correlations of classes
that never enter. From 6,000 classes up (``method="auto"`` → ``"working_set"``, numba path) each target is solved
on a working set of sources (first the 64 with the largest |b_j|) and the block's solutions are checked
against all n sources; violators and near-violators join and the block is solved again, until no
source outside it violates the KKT conditions (at most 4,096 sources, else the full homotopy). The
answers are the homotopy's, certified the same way (see :mod:`numba_workingset`); ``knots=True``
always walks the full homotopy. Targets are spread over CPU threads by numba
(``cache=True``: compiled once per machine, ≈ 12 s; a later process loads the cache in ≈ 0.4 s).
Memory is O(n²) plus the nonzero coefficients (targets are solved in internal blocks whose dense
kernel output is bounded by ``block_bytes``, then kept sparse), never O(n³) nor O(L·T·n).

The certificate (field ``kkt``)
-------------------------------
With the gradient g = 2(Ĉt − b) of the smooth part, for every source j ≠ i

    v_j = |g_j + λ sign(t_j)|          if t_j ≠ 0
    v_j = max(0, |g_j| − λ)            if t_j = 0

and ``kkt = max_j v_j / λ_max`` (λ_max of that target; the absolute violation if λ_max = 0).
It is 0 for an exact solution; a value ≤ ``tol`` means t is optimal up to that relative
perturbation of b. No screening rule is trusted to skip this check: Conjecture 1's rule
(|b_j| < λ/2 ⇒ t_j = 0) is the KKT test at t = 0 and is not safe (a class uncorrelated with the
target can still be needed to cancel what another source brings in); the polisher only uses
that test, at its starting point, to seed a working set that full KKT checks then grow.

What to expect (all targets, numba path, measured on 2 shared CPU cores; bench/covlasso.py)
-----------------------------------------------------------------------------------------
A solve walks every breakpoint of the path down to the smallest λ asked for; each step costs
O(n·k), k the active set (k ≤ rank C ≤ d + 1), so a target costs ≈ n·k² and the whole model
≈ n²·k². On logits shaped like a classifier's (synthetic, N = 20,000, d = 256…2048):

* n = 100:    ≈ 1 ms for one λ (0.1 λ_max), 3–9 ms for a 10-λ path (0.9 → 0.02 λ_max).
* n = 300:    5–12 ms for one λ, 20–60 ms for a path.
* n = 1,000:  0.06–0.13 s for one λ (4–8 matmul-equivalents), 0.75–1.6 s for a path (50–100
  matmul-eq); 11–120× faster than scikit-learn (lars_path_gram, enet_path) and celer, thousands
  of times faster than cvxpy; every solution certified (worst relative KKT ≈ 1e-15).
* n = 2,000:  ≈ 0.8 s for one λ, ≈ 15 s for a path.   n = 5,000: ≈ 12 s and ≈ 4 min.
  (Both ≈ 6 and ≈ 110 matmul-eq: active sets grow with n, so cost tracks n³.)
* n = 21,841 (ImageNet-21k), extrapolated: ≈ 15–20 min for one λ and ≈ 5 h for a path on 2
  cores; C alone is 3.8 GB. The coefficients come back sparse (``sparse``, O(nonzeros)): targets
  are solved in internal blocks, so memory stays O(n²) plus the nonzeros (bench/scale.py).
  More cores scale ≈ linearly.
  ``device="cuda"`` runs the batched torch homotopy instead (dense D·C products and batched
  Cholesky per breakpoint, batches of a few hundred targets): not benchmarked here (no GPU
  on the development machine), tested on the CPU for agreement with the numba path; on the CPU it
  is slower than numba and never chosen by default.

The first call in a process loads the compiled kernels from numba's cache (≈ 0.4 s); the very
first on a machine compiles them (≈ 12 s).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Sequence

import numpy as np

from neudep_assets.lib.covlasso.gauge import check_gauge, correction
from neudep_assets.lib.covlasso.inputs import METHODS, check_device, validate
from neudep_assets.lib.covlasso.path import PathKnots
from neudep_assets.lib.covlasso.problem import target_rhs
from neudep_assets.lib.covlasso.sparse import SparseCoef

__all__ = ["CovLassoPath", "solve_path", "concat_paths", "kkt_violation"]

WS_START, WS_MAX = 64, 4096  # working-set homotopy: first block size, largest block before the full homotopy
WS_MIN_N = 6000  # "auto" takes the working set from this many sources up. Measured (40 targets, 2 cores,
# d = 768): n = 3,000 0.8–1.1× the homotopy's speed, 5,000 1.33× at one λ but 0.93× on the default grid,
# 10,000 1.5× / 1.75×; at n = 1,000 the block's re-solves cost more than they save (0.5–0.7×)


@dataclasses.dataclass
class CovLassoPath:
    """The result of :func:`solve_path`. Arrays are numpy; l indexes ``lambdas``, k ``targets``.

    sparse:     the coefficients, sparse (:class:`SparseCoef`, O(nonzeros)); ``coef`` is the dense
                (n_lambdas, n_targets, n) array of each source class's coefficient (0 at the target),
                built on demand (small problems only).
    lambda_abs: (n_lambdas, n_targets) λ as the paper defines it (absolute).
    lambda_max: (n_targets,) 2‖b‖_∞, the smallest λ with t = 0.
    kkt:        (n_lambdas, n_targets) relative KKT violation (see the module docstring).
    n_active:   (n_lambdas, n_targets) number of nonzero coefficients.
    status:     (n_lambdas, n_targets) 0 homotopy, 1 repaired by the polisher, 2 not certified.
    breakpoints:(n_targets,) homotopy breakpoints walked (entries + exits) per target.
    targets, lambdas (as given), lambda_mode, mode ("within" / "between"), tol, seconds (wall
    time of the call), device ("cpu" for numba, else the torch device used).
    knots:      the exact path of each target (``solve_path(knots=True)``), else None.
    """

    sparse: SparseCoef
    lambda_abs: np.ndarray
    lambda_max: np.ndarray
    kkt: np.ndarray
    n_active: np.ndarray
    status: np.ndarray
    breakpoints: np.ndarray
    targets: np.ndarray
    lambdas: np.ndarray
    lambda_mode: str
    mode: str
    tol: float
    seconds: float
    device: str = "cpu"
    knots: PathKnots | None = None
    gauge: str = "raw"  # "centered": each target's sources re-centred without it (covlasso.gauge)

    @property
    def coef(self) -> np.ndarray:
        return self.sparse.dense()

    @property
    def certified(self) -> bool:
        """True when every solution's KKT violation is within ``tol``."""
        return bool(np.all(self.kkt <= self.tol))


# ----------------------------------------------------------------------------- certificate


def kkt_violation(C, coef, b, excl, lam_abs, lam_max, V=None, kap=None) -> np.ndarray:
    """Relative KKT violation of coef (T, n) for right-hand sides b (n, T), excluded indices
    excl (T,) (−1 for none), absolute λ (T,) and λ_max (T,); V (n, T) and kap (T,): the centered gauge's
    correction (:mod:`gauge`). Dense products, O(T·n²)."""
    G = 2.0 * (coef @ C - b.T)  # C symmetric: row t of coef @ C is (C t)ᵀ
    if V is not None and V.shape[0]:
        sig = coef.sum(1)
        G += 2.0 * (V.T * sig[:, None] + np.einsum("tj,jt->t", coef, V)[:, None] + (kap * sig)[:, None])
    lam = lam_abs[:, None]
    v = np.where(coef > 0, np.abs(G + lam), np.where(coef < 0, np.abs(G - lam), np.maximum(np.abs(G) - lam, 0.0)))
    rows = np.nonzero(excl >= 0)[0]
    v[rows, excl[rows]] = 0.0
    denom = np.where(lam_max > 0, lam_max, 1.0)
    return v.max(axis=1) / denom


def _certify(C, B, excl, coef, lam_abs, lam_max, V, kap):
    """The certificate for every (λ, target), from C (and the gauge's correction) and coef only."""
    import numba

    from neudep_assets.lib.covlasso import numba_kernel as K

    return K.kkt_many(C, B, excl, coef, np.ascontiguousarray(lam_abs), lam_max, V, kap, numba.get_num_threads())


# ----------------------------------------------------------------------------- the solver


def _solve_numba(C, B, excl, mus, tol, V, kap, knots=False, method="homotopy"):
    """The numba homotopy (`method` "homotopy", or "working_set": :mod:`numba_workingset`); with `knots`
    (always the full homotopy), also each target's path knots (:class:`PathKnots`), else None.

    Knots are a variable-length output, so with `knots` the targets are spread over plain threads (one
    list each, interleaved as numba's prange would, the kernel releasing the GIL), each filling its own
    growing buffers (:func:`numba_kernel.solve_knots`)."""
    import numba

    from neudep_assets.lib.covlasso import numba_kernel as K

    T, Ls = mus.shape
    n = C.shape[0]
    coef = np.empty((Ls, T, n))
    nact = np.empty((Ls, T), np.int64)
    stat = np.empty((Ls, T), np.int64)
    kkt = np.empty((Ls, T))
    info = np.zeros((T, 6), np.int64)
    args = (C, B, excl, mus, float(tol), 10 * n + 1000, coef, nact, stat, kkt, info)
    if not knots and method == "working_set":
        from neudep_assets.lib.covlasso.numba_workingset import solve_many_ws

        ws_info = np.zeros((T, 2), np.int64)  # rounds, fell back (read by the kernel's tests)
        solve_many_ws(C, B, excl, mus, float(tol), WS_START, WS_MAX, coef, nact, stat, kkt, info, ws_info, V, kap,
                      numba.get_num_threads())
        return coef, stat, info[:, 0], None
    if not knots:
        K.solve_many(*args, V, kap, numba.get_num_threads())
        return coef, stat, info[:, 0], None
    from concurrent.futures import ThreadPoolExecutor

    nth = max(1, min(numba.get_num_threads(), T))
    lists = [np.arange(w, T, nth, dtype=np.int64) for w in range(nth)]
    with ThreadPoolExecutor(nth) as pool:
        outs = list(pool.map(lambda tl: K.solve_knots(*args, V, kap, tl), lists))
    parts = [PathKnots.from_kernel(*o, info[tl, 4] == 0) for o, tl in zip(outs, lists)]
    order = np.argsort(np.concatenate(lists), kind="stable")
    return coef, stat, info[:, 0], PathKnots.concat(parts).take(order)


def _lambda_abs(lam, lam_max, lambda_mode):
    return lam[:, None] * lam_max[None, :] if lambda_mode == "relative" else np.repeat(lam[:, None], lam_max.size, 1)


def _solve_block(C, cross, tg, lam, lambda_mode, tol, dev, knots=False, method="homotopy", gauge="raw"):
    """Solve, certify and repair the targets `tg` (one internal chunk); dense (L, T, n) coefficients, and
    the path knots (with `knots`; they come from the numba kernel, whatever the device)."""
    B, excl, lam_max = target_rhs(C, cross, tg, gauge)
    V, kap = correction(C, excl, gauge)
    lam_abs = _lambda_abs(lam, lam_max, lambda_mode)
    order = np.argsort(-lam, kind="stable")  # the homotopy walks λ downwards
    mus = np.ascontiguousarray((0.5 * lam_abs[order]).T)  # (T, L)
    path_knots = None
    if dev == "cpu" or knots:
        coef_s, stat_s, breakpoints, path_knots = _solve_numba(C, B, excl, mus, tol, V, kap, knots, method)
    else:
        from neudep_assets.lib.covlasso.torch_kernel import solve_many_torch

        coef_s, stat_s, breakpoints, need_cpu = solve_many_torch(
            C, B, excl, mus, float(tol), dev.removeprefix("torch:"), V, kap
        )
        if need_cpu.any():  # degenerate targets the lockstep path gave up on: the numba path
            sel = np.flatnonzero(need_cpu)
            c2, s2, b2, _ = _solve_numba(C, np.ascontiguousarray(B[:, sel]), excl[sel], np.ascontiguousarray(mus[sel]),
                                         tol, np.asfortranarray(V[:, sel]), kap[sel])
            coef_s[:, sel], stat_s[:, sel], breakpoints[sel] = c2, s2, b2
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    coef = coef_s[inv]
    status = stat_s[inv].copy()

    # independent certificate; repair what it rejects but the kernel had accepted
    kkt = _certify(C, B, excl, coef, lam_abs, lam_max, V, kap)
    bad = np.argwhere((kkt > tol) & (status < 2))
    if bad.size:
        from neudep_assets.lib.covlasso import numba_kernel as K

        ls, ks = bad[:, 0], bad[:, 1]
        sub = np.ascontiguousarray(coef[ls, ks])
        Vk, kk = np.asfortranarray(V[:, ks]), kap[ks]
        K.polish_many(
            C, np.ascontiguousarray(B[:, ks]), excl[ks], 0.5 * lam_abs[ls, ks], 0.5 * lam_max[ks], sub, float(tol),
            Vk, kk)
        new = kkt_violation(C, sub, B[:, ks], excl[ks], lam_abs[ls, ks], lam_max[ks], Vk, kk)
        better = new < kkt[ls, ks]
        coef[ls[better], ks[better]] = sub[better]
        kkt[ls[better], ks[better]] = new[better]
        status[ls, ks] = np.where(kkt[ls, ks] <= tol, 1, 2)
        if path_knots is not None:  # a repaired solution is not the homotopy's: its path is not exact
            path_knots.exact[ks] = False
    return coef, lam_abs, lam_max, kkt, status, np.asarray(breakpoints), path_knots


def solve_path(
    C,
    lambdas: Sequence[float],
    *,
    cross=None,
    targets=None,
    lambda_mode: str = "relative",
    tol: float = 1e-9,
    device=None,
    block_bytes: int = 2**27,
    knots: bool = False,
    method: str = "auto",
    gauge: str = "raw",
) -> CovLassoPath:
    """Solve the Covariance Lasso for every target and every λ, with a KKT certificate.

    C: (n, n) uncentered second moment E[f fᵀ] of the source logits (symmetric PSD, may be
        rank-deficient). cross: None (within-model) or E[f gᵀ] of shape (n, m) (between-model:
        target i of g regressed on f's classes except class i; for i ≥ n nothing is excluded).
    lambdas: λ values, fractions of each target's λ_max (``lambda_mode="relative"``) or the
        paper's λ (``"absolute"``); any order, kept as given in the output.
    targets: target indices (default: all n, or all m between models).
    tol: a solution whose relative KKT violation exceeds ``tol`` is repaired; the final
        certificate is returned in ``kkt`` (and ``status`` = 2 marks any that stay above it).
    device: None / "cpu" → numba homotopy on CPU threads; "cuda[:k]" (or any torch device
        string, e.g. "torch:cpu" for testing) → batched torch homotopy, same certificate.
    block_bytes: targets are solved in internal blocks whose dense kernel output (L × block × n
        floats) stays under this size; the result is sparse, so memory is O(n² + nonzeros).
    knots: also keep each target's exact path from λ_max down to the smallest λ asked for (``knots``,
        :class:`~neudep_assets.lib.covlasso.path.PathKnots`, O(nonzeros along the path)). The knots are
        recorded by the numba homotopy: with knots=True a CUDA device is not used (one solve gives both).
    method: the CPU engine. "homotopy" walks each target's whole path on all n sources; "working_set"
        (:mod:`numba_workingset`) walks it on a growing set of candidate sources and certifies the
        result on all of them (the same solutions, faster at large n); "auto" = "working_set" from
        ``WS_MIN_N`` = 6,000 sources up, unless `knots` (the exact path needs the full homotopy).
    gauge: "raw" (the paper's problem on C as given) or "centered": C (and cross) are the moments of the
        centred logits (``offsets.gauge_moment``) and each target's sources are re-centred without it
        (:mod:`~neudep_assets.lib.covlasso.gauge`: Ĉ = C + v1ᵀ + 1vᵀ + κ11ᵀ per target, applied where the
        kernels read C, never formed: the same memory and work as the raw gauge). The coefficients are those
        of the sources h_j = f_j − m₋ᵢ.
    Raises ValueError on invalid input (shape, symmetry, NaN/Inf, negative λ, bad targets, method, gauge).
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_gauge(gauge)
    C, lam, cross, tg = validate(C, lambdas, cross, targets, lambda_mode, tol)
    auto_homotopy = method == "auto" and C.shape[0] < WS_MIN_N
    method = "homotopy" if knots or method == "homotopy" or auto_homotopy else "working_set"
    dev = check_device(device)
    n, L = C.shape[0], lam.size
    step = max(1, int(block_bytes // (8 * L * n)))
    parts, lam_abs, lam_max, kkt, status, bps, kns = [], [], [], [], [], [], []
    for s0 in range(0, tg.size, step):
        coef, la, lm, kk, st, bp, kn = _solve_block(C, cross, tg[s0:s0 + step], lam, lambda_mode, tol, dev, knots,
                                                   method, gauge)
        parts.append(SparseCoef.from_dense(coef))
        del coef
        lam_abs.append(la), lam_max.append(lm), kkt.append(kk), status.append(st), bps.append(bp), kns.append(kn)
    kkt = np.concatenate(kkt, axis=1)
    n_bad = int(np.count_nonzero(kkt > tol))
    if n_bad:
        l, k = np.unravel_index(np.argmax(kkt), kkt.shape)
        warnings.warn(
            f"covlasso: {n_bad} of {kkt.size} solutions are not certified (KKT > tol = {tol:g}); worst "
            f"{kkt[l, k]:.3g} at target {tg[k]}, lambda {lam[l]:g} ({lambda_mode}). C is probably "
            "numerically singular there (e.g. lambda = 0 with near-duplicate classes).",
            RuntimeWarning,
            stacklevel=2,
        )
    sparse = SparseCoef.concat(parts)
    return CovLassoPath(
        sparse=sparse,
        lambda_abs=np.concatenate(lam_abs, axis=1),
        lambda_max=np.concatenate(lam_max),
        kkt=kkt,
        n_active=sparse.n_active(),
        status=np.concatenate(status, axis=1),
        breakpoints=np.concatenate(bps),
        targets=tg,
        lambdas=np.asarray(lambdas, dtype=np.float64).reshape(-1).copy(),
        lambda_mode=lambda_mode,
        mode="within" if cross is None else "between",
        tol=float(tol),
        seconds=time.perf_counter() - t0,
        device="cpu" if knots else dev,
        knots=PathKnots.concat(kns) if knots else None,
        gauge=gauge,
    )


def concat_paths(paths: Sequence[CovLassoPath]) -> CovLassoPath:
    """One path from paths of the same problem over disjoint target chunks (in order)."""
    p0 = paths[0]
    return dataclasses.replace(
        p0, sparse=SparseCoef.concat([p.sparse for p in paths]),
        lambda_abs=np.concatenate([p.lambda_abs for p in paths], axis=1),
        lambda_max=np.concatenate([p.lambda_max for p in paths]),
        kkt=np.concatenate([p.kkt for p in paths], axis=1),
        n_active=np.concatenate([p.n_active for p in paths], axis=1),
        status=np.concatenate([p.status for p in paths], axis=1),
        breakpoints=np.concatenate([p.breakpoints for p in paths]),
        knots=PathKnots.concat([p.knots for p in paths]) if all(p.knots is not None for p in paths) else None,
        targets=np.concatenate([p.targets for p in paths]), seconds=sum(p.seconds for p in paths))
