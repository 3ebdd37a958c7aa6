"""One dependency analysis: CovLasso along the λ path, Table-1 metrics, and the theory diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neudep_assets.lib.analysis import table1, theory
from neudep_assets.lib.covlasso import solve_path


@dataclass
class DependencyAnalysis:
    path: CovLassoPath
    edges: pd.DataFrame  # lambda_index, target_class, source_class, coef (nonzero only)
    per_target: pd.DataFrame  # lambda_index, target_class, lambda_abs, lambda_max, kkt, Table-1 metrics, screening
    per_class: pd.DataFrame  # target_class, err0, rel_err0, rank, eq5_violations, eq5_max_violation
    rank: int


def analyse(C: np.ndarray, lambdas, *, eval_source: np.ndarray, eval_labels: np.ndarray,
            cross: np.ndarray | None = None, target_second_moment: np.ndarray | None = None,
            eval_target: np.ndarray | None = None, lambda_mode: str = "relative", tol: float = 1e-9,
            device: str | None = None) -> DependencyAnalysis:
    """Within (cross=None) or between analysis of every target class.

    `C` (and `cross`, `target_second_moment`) come from the fit split; `eval_*` are logits of the
    evaluation split (for between, `eval_target` are the target model's logits of the same samples).
    """
    path = solve_path(C, lambdas, cross=cross, lambda_mode=lambda_mode, tol=tol, device=device)
    s = np.diag(C) if cross is None else target_second_moment
    targets = np.asarray(path.targets)
    t1 = table1.table1_metrics(eval_source, eval_labels, path.coef, targets, target_logits=eval_target)
    screen = theory.screening(C, path, cross=cross, target_second_moment=target_second_moment)
    red = theory.redundancy(C, cross=cross, target_second_moment=target_second_moment)
    eq5 = theory.eq5_violations(C, path, cross=cross, target_second_moment=target_second_moment,
                                err0=red["err0"].to_numpy())

    lam_idx, tgt_pos, src = np.nonzero(path.coef)
    edges = pd.DataFrame({"lambda_index": lam_idx, "target_class": targets[tgt_pos], "source_class": src,
                          "coef": path.coef[lam_idx, tgt_pos, src]})
    n_l, n_t = path.kkt.shape
    solver = pd.DataFrame({
        "lambda_index": np.repeat(np.arange(n_l), n_t), "target_class": np.tile(targets, n_l),
        "lambda_abs": path.lambda_abs.ravel(), "lambda_max": np.tile(path.lambda_max, n_l),
        "kkt": path.kkt.ravel(),
        "fit_err": theory.path_errors(C, path, cross=cross, target_second_moment=s).ravel(),
    })
    per_target = (solver
                  .merge(t1.rename(columns={"target": "target_class"}), on=["lambda_index", "target_class"])
                  .merge(screen.rename(columns={"target": "target_class"})
                         [["lambda_index", "target_class", "n_candidates", "n_nonzero", "thm3_screened",
                           "thm3_violations", "conj1_screened", "conj1_violations"]],
                         on=["lambda_index", "target_class"]))
    per_class = (red.rename(columns={"target": "target_class"})
                 .merge(eq5.rename(columns={"target": "target_class", "n_violations": "eq5_violations",
                                            "max_violation": "eq5_max_violation"}), on="target_class"))
    rank = int(red["rank"].iloc[0]) if "rank" in red else theory.numerical_rank(C)
    per_class["rank"] = rank
    return DependencyAnalysis(path=path, edges=edges, per_target=per_target,
                              per_class=per_class[["target_class", "err0", "rel_err0", "rank", "eq5_violations",
                                                   "eq5_max_violation"]], rank=rank)


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
