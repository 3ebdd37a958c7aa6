"""One dependency analysis: CovLasso along the λ path, Table-1 metrics, and the theory diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neudep_assets.lib.analysis import table1, theory
from neudep_assets.lib.analysis.spectral import Spectral, spectral
from neudep_assets.lib.covlasso import CovLassoPath, concat_paths, path_errors_sparse, refit, solve_path
from neudep_assets.lib.covlasso.path import knot_frames

REFIT_COLUMNS = ["abs_err", "rel_err", "acc", "pos_acc"]  # Table-1 metrics also stored for the refit (suffix _refit)


@dataclass
class DependencyAnalysis:
    path: CovLassoPath  # coefficients sparse: path.sparse
    edges: pd.DataFrame  # lambda_index, target_class, source_class, coef (nonzero only)
    per_target: pd.DataFrame  # lambda_index, target_class, lambda_abs, lambda_max, kkt, Table-1 metrics (lasso and
    #                           least-squares refit on the support), fit errors, screening
    per_class: pd.DataFrame  # target_class, err0, rel_err0, rank, eq5_violations, eq5_max_violation
    rank: int
    spectral: Spectral  # the one eigendecomposition of C, shared by every diagnostic (and Fig. 3)
    path_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the exact path (store_path): its knots
    #                                      and their coefficients, by store table (covlasso.path.knot_frames)


def check_target_chunk(target_chunk, where: str = "target_chunk") -> int | None:
    """None/0 (= all targets at once) or a positive int; anything else names the key."""
    if target_chunk is None or (isinstance(target_chunk, (int, np.integer)) and not isinstance(target_chunk, bool)
                                and target_chunk >= 1):
        return None if target_chunk is None else int(target_chunk)
    raise ValueError(f"{where} must be a positive integer (targets per chunk), got {target_chunk!r}")


def analyse(C: np.ndarray, lambdas, *, eval_source: np.ndarray, eval_labels: np.ndarray,
            cross: np.ndarray | None = None, target_second_moment: np.ndarray | None = None,
            eval_target: np.ndarray | None = None, lambda_mode: str = "relative", tol: float = 1e-9,
            device: str | None = None, target_chunk: int | None = None,
            store_path: bool = False) -> DependencyAnalysis:
    """Within (cross=None) or between analysis of every target class.

    `C` (and `cross`, `target_second_moment`) come from the fit split; `eval_*` are logits of the
    evaluation split (for between, `eval_target` are the target model's logits of the same samples).
    `target_chunk`: solve (and certify) the targets this many at a time; the analysis is the same, row
    for row. Everything after the solve reads the sparse coefficients: one eigendecomposition of C
    serves redundancy, Eq. 5 and screening; err_i along the path is computed once.
    `store_path`: also keep each target's exact path from λ_max to the smallest λ (``path_tables``; solved
    by the numba homotopy even when `device` is CUDA).
    """
    target_chunk = check_target_chunk(target_chunk)
    m = C.shape[0] if cross is None else np.asarray(cross).shape[1]
    step = target_chunk or max(m, 1)
    paths = [solve_path(C, lambdas, cross=cross, targets=np.arange(s0, min(s0 + step, m)), lambda_mode=lambda_mode,
                        tol=tol, device=device, knots=store_path) for s0 in range(0, m, step)]
    path = paths[0] if len(paths) == 1 else concat_paths(paths)
    del paths
    C = theory.check_square(C, "C")
    M = C if cross is None else np.asarray(cross, dtype=np.float64)
    s = np.diag(C) if cross is None else np.asarray(target_second_moment, dtype=np.float64)
    targets = np.asarray(path.targets)
    coef = path.sparse
    sp = spectral(C, None)

    fit_err = path_errors_sparse(C, coef, M, targets, s[targets])
    ls = refit(C, coef, M, targets)
    fit_err_refit = path_errors_sparse(C, ls, M, targets, s[targets])
    t1 = table1.table1_metrics(eval_source, eval_labels, coef, targets, target_logits=eval_target)
    t1r = table1.table1_metrics(eval_source, eval_labels, ls, targets, target_logits=eval_target)
    screen = theory.screening(C, path, cross=cross, target_second_moment=target_second_moment, spectral=sp)
    red = theory.redundancy(C, cross=cross, target_second_moment=target_second_moment, spectral=sp)
    eq5 = theory.eq5_violations(C, path, cross=cross, target_second_moment=target_second_moment, err0=red,
                                err=fit_err, spectral=sp)

    lam_idx, tgt_pos, src, val = coef.edges()
    edges = pd.DataFrame({"lambda_index": lam_idx, "target_class": targets[tgt_pos], "source_class": src,
                          "coef": val})
    n_l, n_t = path.kkt.shape
    # every frame below is laid out (λ-major, targets in path order): columns line up without a merge
    per_target = pd.DataFrame({
        "lambda_index": np.repeat(np.arange(n_l, dtype=np.int64), n_t), "target_class": np.tile(targets, n_l),
        "lambda_abs": path.lambda_abs.ravel(), "lambda_max": np.tile(path.lambda_max, n_l),
        "kkt": path.kkt.ravel(), "fit_err": fit_err.ravel(),
    })
    for col in t1.columns.drop(["lambda_index", "target"]):
        per_target[col] = t1[col].to_numpy()
    for col in ["n_candidates", "n_nonzero", "thm3_screened", "thm3_violations", "conj1_screened", "conj1_violations"]:
        per_target[col] = screen[col].to_numpy()
    for col in REFIT_COLUMNS:
        per_target[f"{col}_refit"] = t1r[col].to_numpy()
    per_target["fit_err_refit"] = fit_err_refit.ravel()
    per_target["fit_rel_err"] = (fit_err / s[targets]).ravel()
    per_class = (red.rename(columns={"target": "target_class"})
                 .merge(eq5.rename(columns={"target": "target_class", "n_violations": "eq5_violations",
                                            "max_violation": "eq5_max_violation"}), on="target_class"))
    rank = sp.rank
    per_class["rank"] = rank
    path_tables = dict(zip(("dependency_path_knots", "dependency_path"),
                           knot_frames(path.knots, targets, path.lambda_max, M, s))) if store_path else {}
    return DependencyAnalysis(path=path, edges=edges, per_target=per_target,
                              per_class=per_class[["target_class", "err0", "rel_err0", "rank", "eq5_violations",
                                                   "eq5_max_violation"]], rank=rank, spectral=sp,
                              path_tables=path_tables)


def best_targets(per_target: pd.DataFrame, lambda_index: int, k: int, max_sources: int = 10) -> list[int]:
    """The k targets reconstructed best (lowest Rel Err) from 1..max_sources sources at one λ."""
    at = per_target[(per_target["lambda_index"] == lambda_index) & per_target["n_sources"].between(1, max_sources)]
    return [int(t) for t in at.nsmallest(k, "rel_err")["target_class"]]


def summarize(per_target: pd.DataFrame, lambdas, *, max_sources: int = 10, max_rel_err: float = 0.2) -> pd.DataFrame:
    """Per λ: share of classes with a dependency (1..max_sources sources, Rel Err ≤ max_rel_err) and more."""
    rows = []
    for li, lam in enumerate(lambdas):
        d = per_target[per_target["lambda_index"] == li]
        dep = d[(d["n_sources"] >= 1) & (d["n_sources"] <= max_sources) & (d["rel_err"] <= max_rel_err)]
        rows.append({
            "lambda": lam, "targets": len(d), "with_dependency": len(dep),
            "share_with_dependency": len(dep) / max(len(d), 1),
            "median_sources": float(d["n_sources"].median()), "median_rel_err": float(d["rel_err"].median()),
            "acc_loss_pts": float(100 * (d["orig_acc"] - d["acc"]).mean()),
            "pos_acc_loss_pts_dep_median": float(100 * (dep["orig_pos_acc"] - dep["pos_acc"]).median()) if len(dep) else float("nan"),
            "max_kkt": float(d["kkt"].max()),
        })
    return pd.DataFrame(rows)
