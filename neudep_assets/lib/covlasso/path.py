"""The exact CovLasso path of each target, kept: its knots, and the dependency at any λ read from them.

The lasso solution t(λ) of a target is piecewise linear in λ (paper Eq. 2; the homotopy of
:mod:`~neudep_assets.lib.covlasso.solver` walks it). Its **knots** are λ_max (t = 0), every λ at which the
active set changes, and the smallest λ solved; between two neighbouring knots λ_a > λ_b

    t(λ) = t_a + u (t_b − t_a),   u = (λ_a − λ) / (λ_a − λ_b) ∈ [0, 1]

exactly, and the fit error err(t) = s − 2bᵀt + tᵀCt (Eq. 5) is the quadratic
err(u) = (1 − u)·err_a + u·err_b − u(1 − u)·h with h = (t_b − t_a)ᵀ C (t_b − t_a) (``seg_curv``, stored on
the knot a). Along the path err is non-increasing as λ decreases (the lasso's training error), so the λ at
which the unexplained share err/s reaches x is one root of that quadratic on the first segment that reaches
x. The support is not monotone in λ: the sparsest dependency within x (:func:`sparsest_within`) is the
fewest sources anywhere on the path, not that λ.

Storage is O(nonzeros along the path): per knot, its nonzero coefficients only (:class:`PathKnots` in
memory; the store's tables ``dependency_path_knots`` and ``dependency_path`` row for row). The readers
below take those two tables (as DataFrames, e.g. ``store.read(...)`` of one analysis) and never solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit, prange

__all__ = ["PathKnots", "knot_frames", "dependency_at", "last_with_at_most", "sparsest_within", "sparsest_on_grid",
           "BOUNDS"]


@dataclass
class PathKnots:
    """Knots of the paths of T targets (in the order of the solver's ``targets``), CSR over knots."""

    target_ptr: np.ndarray  # (T + 1,) knots of target position k: rows target_ptr[k]:target_ptr[k + 1]
    lambda_abs: np.ndarray  # (K,) λ of each knot, decreasing within a target, from λ_max to the smallest λ solved
    indptr: np.ndarray  # (K + 1,) nonzeros of knot r: indptr[r]:indptr[r + 1]
    indices: np.ndarray  # (nnz,) source class (in the order the homotopy activated them)
    data: np.ndarray  # (nnz,) coefficient
    exact: np.ndarray  # (T,) False where the solver's polisher stepped in (a segment may then be approximate)

    @classmethod
    def from_kernel(cls, kmu, kstart, kidx, kval, counts, exact) -> "PathKnots":
        """From :func:`numba_kernel.solve_knots`: μ = λ/2 per knot, each knot's first nonzero relative to its
        target's, the nonzeros, and (knots, nonzeros) per target."""
        nk, nz = counts[:, 0], counts[:, 1]
        target_ptr = np.concatenate([[0], np.cumsum(nk)]).astype(np.int64)
        zoff = np.concatenate([[0], np.cumsum(nz)[:-1]]).astype(np.int64)
        indptr = np.concatenate([kstart + np.repeat(zoff, nk), [int(nz.sum())]]).astype(np.int64)
        return cls(target_ptr, 2.0 * kmu, indptr, kidx, kval, np.asarray(exact, bool))

    def take(self, pos) -> "PathKnots":
        """The knots of target positions `pos`, in that order."""
        pos = np.asarray(pos, np.int64)
        rows = _ranges(self.target_ptr[pos], np.diff(self.target_ptr)[pos])
        vals = _ranges(self.indptr[rows], np.diff(self.indptr)[rows])
        return PathKnots(np.concatenate([[0], np.cumsum(np.diff(self.target_ptr)[pos])]).astype(np.int64),
                         self.lambda_abs[rows], np.concatenate([[0], np.cumsum(np.diff(self.indptr)[rows])]).astype(
                             np.int64), self.indices[vals], self.data[vals], self.exact[pos])

    @classmethod
    def concat(cls, parts: list["PathKnots"]) -> "PathKnots":
        """Join the knots of disjoint target chunks, in order."""
        koff = np.cumsum([0] + [p.lambda_abs.size for p in parts[:-1]])
        zoff = np.cumsum([0] + [p.indices.size for p in parts[:-1]])
        return cls(np.concatenate([np.zeros(1, np.int64)] + [p.target_ptr[1:] + o for p, o in zip(parts, koff)]),
                   np.concatenate([p.lambda_abs for p in parts]),
                   np.concatenate([np.zeros(1, np.int64)] + [p.indptr[1:] + o for p, o in zip(parts, zoff)]),
                   np.concatenate([p.indices for p in parts]), np.concatenate([p.data for p in parts]),
                   np.concatenate([p.exact for p in parts]))


def _ranges(starts, lengths) -> np.ndarray:
    """The concatenated ranges starts[i] : starts[i] + lengths[i]."""
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


@njit(cache=True, parallel=True)
def _knot_errors(M, cols, s, shift, lam, target_ptr, indptr, indices, data):
    """Per knot: err = s − 2bᵀt + tᵀCt, and h = dᵀCd of the segment to the next knot of the same target
    (d = t_next − t; 0 on a target's last knot), in O(nonzeros) from the optimality conditions instead of C:
    on the active set A, (b − Ct)_A = μ sign(t)_A (μ = λ/2), so err = s − bᵀt − μ‖t‖₁, and along a segment
    C_AA d = (μ_a − μ_b) sign_A, so h = (μ_a − μ_b) Σ_A sign_j d_j (sign of t_j inside the segment)."""
    K = indptr.size - 1
    T = target_ptr.size - 1
    err = np.empty(K)
    curv = np.zeros(K)
    n = M.shape[0]
    for k in prange(T):
        col = cols[k]
        dv = np.zeros(n)
        sg = np.zeros(n)
        for r in range(target_ptr[k], target_ptr[k + 1]):
            a, b = indptr[r], indptr[r + 1]
            lin = 0.0
            l1 = 0.0
            for p in range(a, b):
                lin += (M[indices[p], col] + shift[k]) * data[p]
                l1 += abs(data[p])
            err[r] = s[k] - lin - 0.5 * lam[r] * l1
            if r + 1 < target_ptr[k + 1]:
                for p in range(indptr[r + 1], indptr[r + 2]):
                    dv[indices[p]] = data[p]
                    sg[indices[p]] = 1.0 if data[p] > 0.0 else -1.0
                for p in range(a, b):
                    j = indices[p]
                    dv[j] -= data[p]
                    if sg[j] == 0.0:
                        sg[j] = 1.0 if data[p] > 0.0 else -1.0
                h = 0.0
                for p in range(indptr[r + 1], indptr[r + 2]):
                    j = indices[p]
                    h += sg[j] * dv[j]
                    dv[j] = 0.0
                    sg[j] = 0.0
                for p in range(a, b):
                    j = indices[p]
                    h += sg[j] * dv[j]  # classes that leave at the next knot (the others are reset above)
                    dv[j] = 0.0
                    sg[j] = 0.0
                curv[r] = max(0.5 * (lam[r] - lam[r + 1]) * h, 0.0)
    return err, curv


def knot_frames(knots: PathKnots, targets, lambda_max, M, s, shift=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's rows of a path: (knots, coefficients).

    knots: target_class, knot, lambda_abs, lambda_rel (λ / λ_max), n_sources, fit_err, unexplained_share (err/s),
    seg_curv (h of the segment to the next knot), exact. coefficients: target_class, knot, source_class, coef.
    `M` is C (within) or the cross moment (between); `s` (all classes) E[target²]; `targets`, `lambda_max` as
    the solver returned them; `shift` (per target, centered gauge): the constant its b carries beyond M's column
    (:func:`~neudep_assets.lib.covlasso.gauge.rhs_shift`)."""
    targets = np.asarray(targets, np.int64)
    st = np.asarray(s, np.float64)[targets]
    shift = np.zeros(targets.size) if shift is None else np.asarray(shift, np.float64)
    err, curv = _knot_errors(np.ascontiguousarray(M, dtype=np.float64), targets, st, shift, knots.lambda_abs,
                             knots.target_ptr, knots.indptr, knots.indices, knots.data)
    nk = np.diff(knots.target_ptr)
    pos = np.repeat(np.arange(targets.size), nk)
    knot_no = np.arange(knots.lambda_abs.size) - knots.target_ptr[pos]
    lmax = np.asarray(lambda_max, np.float64)[pos]
    kf = pd.DataFrame({"target_class": targets[pos], "knot": knot_no, "lambda_abs": knots.lambda_abs,
                       "lambda_rel": np.divide(knots.lambda_abs, lmax, out=np.ones_like(lmax), where=lmax > 0),
                       "n_sources": np.diff(knots.indptr), "fit_err": err,
                       "unexplained_share": np.divide(err, st[pos], out=np.zeros_like(err), where=st[pos] > 0),
                       "seg_curv": curv, "exact": knots.exact[pos]})
    row = np.repeat(np.arange(knots.lambda_abs.size), np.diff(knots.indptr))
    cf = pd.DataFrame({"target_class": targets[pos][row], "knot": knot_no[row], "source_class": knots.indices,
                       "coef": knots.data})
    return kf, cf


# ----------------------------------------------------------------------------- readers of the stored path


def _check(knots: pd.DataFrame) -> pd.DataFrame:
    if "dependency_run_id" in knots and knots["dependency_run_id"].nunique() > 1:
        raise ValueError("knots: rows of several analyses (dependency_run_id); pass one analysis")
    if knots.empty:
        raise ValueError("knots: no path rows (was the analysis stored with store_path off?)")
    return knots.sort_values(["target_class", "knot"]).reset_index(drop=True)


def _coefs_between(coefs: pd.DataFrame, picks: pd.DataFrame) -> pd.DataFrame:
    """Coefficients (1 − u)·t_a + u·t_b for picks rows (target_class, knot_a, knot_b, u, + kept columns)."""
    c = coefs[["target_class", "knot", "source_class", "coef"]]
    a = picks.merge(c, left_on=["target_class", "knot_a"], right_on=["target_class", "knot"]).drop(columns="knot")
    b = picks.merge(c, left_on=["target_class", "knot_b"], right_on=["target_class", "knot"]).drop(columns="knot")
    keys = list(picks.columns) + ["source_class"]
    both = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b")).fillna({"coef_a": 0.0, "coef_b": 0.0})
    both["coef"] = (1.0 - both["u"]) * both["coef_a"] + both["u"] * both["coef_b"]
    both = both[both["coef"] != 0.0]
    return both.drop(columns=["coef_a", "coef_b"]).sort_values(["target_class", "source_class"]).reset_index(drop=True)


def _segment_rows(k: pd.DataFrame) -> pd.DataFrame:
    """Each knot with the next knot of its target (λ_b, err_b), the last knot paired with itself."""
    nxt = k.groupby("target_class").shift(-1)
    out = k.assign(knot_b=nxt["knot"].fillna(k["knot"]).astype(np.int64),
                   lambda_b=nxt["lambda_abs"].fillna(k["lambda_abs"]), err_b=nxt["fit_err"].fillna(k["fit_err"]))
    return out


def dependency_at(knots: pd.DataFrame, coefs: pd.DataFrame, lam: float, *, relative: bool = True) -> pd.DataFrame:
    """The dependency of every stored target at λ (a fraction of each target's λ_max, or absolute), by exact
    interpolation between its two knots: rows target_class, lambda_abs, lambda_rel, source_class, coef.
    λ ≥ λ_max gives no row (t = 0); λ below a target's smallest stored λ is refused, naming `lam`."""
    k = _check(knots)
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating)) or not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number ≥ 0, got {lam!r}")
    if relative and not 0 < lam <= 1:
        raise ValueError(f"lam is a fraction of λ_max (relative) and must lie in (0, 1], got {lam!r}")
    seg = _segment_rows(k)
    lmax = seg.groupby("target_class")["lambda_abs"].transform("first")
    lam_abs = lam * lmax if relative else pd.Series(float(lam), index=seg.index)
    end = seg.groupby("target_class")["lambda_abs"].transform("last")
    low = lam_abs < end * (1 - 1e-12)
    if low.any():
        t = int(seg.loc[low, "target_class"].iloc[0])
        raise ValueError(f"lam = {lam!r} ({'relative' if relative else 'absolute'}) lies below the stored path of "
                         f"target {t} (it ends at λ = {float(end[low].iloc[0]):.6g}, λ_rel = "
                         f"{float(end[low].iloc[0] / lmax[low].iloc[0]):.6g}); solve at that λ instead")
    inside = (seg["lambda_abs"] >= lam_abs) & ((seg["lambda_b"] < lam_abs) | (seg["knot_b"] == seg["knot"]))
    pick = seg[inside].groupby("target_class").head(1)
    la = lam_abs[pick.index]
    width = pick["lambda_abs"] - pick["lambda_b"]
    u = np.where(width > 0, (pick["lambda_abs"] - la) / width.where(width > 0, 1.0), 0.0)
    picks = pd.DataFrame({"target_class": pick["target_class"].to_numpy(), "knot_a": pick["knot"].to_numpy(),
                          "knot_b": pick["knot_b"].to_numpy(), "u": u, "lambda_abs": la.to_numpy(),
                          "lambda_rel": (la / lmax[pick.index]).to_numpy()})
    return _coefs_between(coefs, picks).drop(columns=["knot_a", "knot_b", "u"])


def last_with_at_most(knots: pd.DataFrame, coefs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per target, the last dependency along the path (the smallest stored λ) with at most k sources: a knot
    (the set of λ with ≤ k sources is a union of closed intervals between knots). Rows target_class, knot,
    lambda_abs, lambda_rel, unexplained_share, source_class, coef (a target with k = 0 and t = 0: one row, no
    source)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k (the most sources) must be an integer ≥ 0, got {k!r}")
    kn = _check(knots)
    pick = kn[kn["n_sources"] <= k].groupby("target_class").tail(1)
    cols = ["target_class", "knot", "lambda_abs", "lambda_rel", "unexplained_share"]
    c = coefs[["target_class", "knot", "source_class", "coef"]]
    return pick[cols].merge(c, on=["target_class", "knot"], how="left").sort_values(
        ["target_class", "source_class"]).reset_index(drop=True)


BOUNDS = ("unexplained_share", "rel_err")  # what "sparsest" can bound: fit-split err/E[y²], or Table 1's Rel Err


def _check_x(x, bound: str = "unexplained_share") -> float:
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}, got {bound!r}")
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating)) or not 0 < x <= 1:
        raise ValueError(f"x (the largest {bound}) must lie in (0, 1], got {x!r}")
    return float(x)


def sparsest_within(knots: pd.DataFrame, coefs: pd.DataFrame, x: float) -> pd.DataFrame:
    """Per target, the dependency with the fewest sources anywhere on the stored path whose unexplained share
    (fit split, err/E[target²]) is ≤ x; among those, the one at the largest λ. Targets whose stored path never
    reaches x are left out. Rows target_class, bound ("unexplained_share"), lambda_abs, lambda_rel,
    unexplained_share, n_sources, source_class, coef.

    The lasso's support is not monotone in λ, so this is not the largest λ that meets x. Where it is attained:
    err is non-increasing as λ falls, and on a segment between knots λ_a > λ_b the support is constant and
    contains both knots' supports (a class entering at λ_a is zero there, one leaving at λ_b is zero there).
    So every point of a segment wholly within x is matched or beaten (fewer sources, or as many at a larger
    λ) by its knot a, and the candidates are the knots within x plus the exact root of err = x·s on the first
    segment that reaches x (its λ solved from the segment's quadratic)."""
    x = _check_x(x)
    kn = _check(knots)
    s = kn["fit_err"] / kn["unexplained_share"].where(kn["unexplained_share"] > 0, np.nan)
    s = s.groupby(kn["target_class"]).transform("first")  # knot 0 (t = 0): fit_err = s
    seg = _segment_rows(kn).assign(s=s.to_numpy())
    lmax_all = seg.groupby("target_class")["lambda_abs"].transform("first")
    # the root on the first segment that reaches x (u = 0: its knot a is within x already)
    reach = seg[seg["err_b"] <= x * seg["s"]].groupby("target_class").head(1)
    e0, e1, h, goal = reach["fit_err"], reach["err_b"], reach["seg_curv"], x * reach["s"]
    u = np.asarray(_first_root(e0.to_numpy(), e1.to_numpy(), h.to_numpy(), goal.to_numpy()))
    u = np.where(e0 <= goal, 0.0, u)
    la = reach["lambda_abs"] - u * (reach["lambda_abs"] - reach["lambda_b"])
    roots = pd.DataFrame({"target_class": reach["target_class"].to_numpy(), "knot_a": reach["knot"].to_numpy(),
                          "knot_b": reach["knot_b"].to_numpy(), "u": u, "lambda_abs": la.to_numpy(),
                          "lambda_rel": (la / lmax_all[reach.index]).to_numpy(),
                          "unexplained_share": ((1 - u) * e0 + u * e1 - u * (1 - u) * h).to_numpy()
                          / reach["s"].to_numpy()})
    roots["n_sources"] = roots["target_class"].map(_coefs_between(coefs, roots).groupby("target_class").size()) \
        .fillna(0).astype(np.int64)
    within = seg[seg["fit_err"] <= x * seg["s"]]
    knots_in = pd.DataFrame({"target_class": within["target_class"].to_numpy(), "knot_a": within["knot"].to_numpy(),
                             "knot_b": within["knot"].to_numpy(), "u": 0.0, "lambda_abs": within["lambda_abs"].to_numpy(),
                             "lambda_rel": (within["lambda_abs"] / lmax_all[within.index]).to_numpy(),
                             "unexplained_share": (within["fit_err"] / within["s"]).to_numpy(),
                             "n_sources": within["n_sources"].to_numpy().astype(np.int64)})
    cand = pd.concat([roots, knots_in], ignore_index=True)
    picks = cand.sort_values(["target_class", "n_sources", "lambda_abs"], ascending=[True, True, False]) \
        .groupby("target_class").head(1).reset_index(drop=True)
    out = _coefs_between(coefs, picks)
    picks.insert(1, "bound", "unexplained_share")
    return picks.drop(columns=["knot_a", "knot_b", "u"]).merge(
        out[["target_class", "source_class", "coef"]], on="target_class", how="left").reset_index(drop=True)


def sparsest_on_grid(metrics: pd.DataFrame, edges: pd.DataFrame, x: float, bound: str = "rel_err") -> pd.DataFrame:
    """Per target, among the analysis's λ grid (``dependency_metrics`` rows of one analysis, with its
    ``dependencies`` edges), the solution with the fewest sources whose `bound` (Table 1's ``rel_err`` on the
    eval split, or the fit split's ``unexplained_share``) is ≤ x; ties: the largest λ. Table 1's Rel Err is
    only known on the grid, not along the path. Rows target_class, bound, lambda_index, lambda_abs, rel_err,
    unexplained_share, n_sources, source_class, coef."""
    x = _check_x(x, bound)
    if "dependency_run_id" in metrics and metrics["dependency_run_id"].nunique() > 1:
        raise ValueError("metrics: rows of several analyses (dependency_run_id); pass one analysis")
    ok = metrics[metrics[bound] <= x]
    picks = ok.sort_values(["target_class", "n_sources", "lambda_abs"], ascending=[True, True, False]) \
        .groupby("target_class").head(1)
    cols = ["target_class", "lambda_index", "lambda_abs", "rel_err", "unexplained_share", "n_sources"]
    picks = picks[cols].assign(bound=bound)[["target_class", "bound"] + cols[1:]]
    e = edges[["lambda_index", "target_class", "source_class", "coef"]]
    return picks.merge(e, on=["target_class", "lambda_index"], how="left").sort_values(
        ["target_class", "source_class"]).reset_index(drop=True)


def _first_root(e0, e1, h, goal):
    """The smallest u ∈ [0, 1] with (1 − u)e0 + u e1 − u(1 − u)h = goal, for e0 > goal ≥ e1 (err decreasing):
    h u² + (e1 − e0 − h) u + (e0 − goal) = 0, in the cancellation-free form 2c / (−B + √(B² − 4hc))."""
    B = e1 - e0 - h
    c = e0 - goal
    disc = np.sqrt(np.maximum(B * B - 4.0 * h * c, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(-B + disc > 0, 2.0 * c / (-B + disc), 1.0)
    return np.clip(u, 0.0, 1.0)
