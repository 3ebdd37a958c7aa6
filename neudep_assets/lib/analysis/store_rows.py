"""A dependency analysis as the result store's rows, certified and committed in one step.

Shared by the dependency assets (defs/dependency_assets.py) and the public API (neudep_assets.api), so
that an analysis committed from a notebook has the same tables, certificate and lineage columns as one
committed by the pipeline: the tables of the analysis keyed by its run key, one `dependency_runs` row
per λ, the certificate (every solution's relative KKT ≤ tol, NaN fails) and the commit itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.config import DependencyConfig, stable_json
from neudep_assets.lib.store import TABLES, ResultStore

#: the science a dependency analysis runs: its code version enters the analysis's key and rows
DEPENDENCIES_SCIENCE = ("neudep_assets.lib.analysis.problem", "neudep_assets.lib.analysis.dependencies",
                        "neudep_assets.lib.analysis.moments", "neudep_assets.lib.analysis.offsets")
DEPENDENCIES_CODE_VERSION = code_version(*DEPENDENCIES_SCIENCE)
SOLVER = "neudep.covlasso homotopy"


def identity(eff: DependencyConfig) -> dict:
    """What an analysis's result depends on: not how its targets were chunked or spread over steps (the
    rows are the same)."""
    return {k: v for k, v in asdict(eff).items() if k not in ("target_chunk", "chunk_steps")}


def uncertified(per_target: pd.DataFrame, tol: float, lambdas, class_names, worst: int = 5) -> tuple[int, list[str]]:
    """How many solutions have a relative KKT above tol (NaN counts), and the worst ones, named."""
    bad = per_target[~(per_target["kkt"].to_numpy(dtype=float) <= tol)]
    top = bad.sort_values("kkt", ascending=False, na_position="first").head(worst)
    return len(bad), [f"{class_names[int(r.target_class)]!r} (class {int(r.target_class)}) at "
                      f"λ={lambdas[int(r.lambda_index)]:g}: KKT {r.kkt:.2e}" for r in top.itertuples()]


def run_rows(run_key: str, kind: str, eff: DependencyConfig, res, *, model: str, sha: str | None, source_model: str,
             source_sha: str | None, dataset_id: str, moments_id: str) -> list[dict]:
    """The analysis's `dependency_runs` rows (one per λ): its lineage, solver, tolerance and config."""
    max_kkt = res.path.kkt.max(axis=1)
    return [{"dependency_run_id": run_key, "kind": kind, "lambda_index": li,
             "lambda_rel": lam if eff.lambda_mode == "relative" else None, "lambda_value": lam,
             "lambda_mode": eff.lambda_mode, "model": model, "checkpoint_sha256": sha, "source_model": source_model,
             "source_checkpoint_sha256": source_sha, "dataset_id": dataset_id, "fit_split": eff.fit_split,
             "eval_split": eff.eval_split, "moments_id": moments_id, "solver": SOLVER, "tol": eff.tol,
             "max_kkt": float(max_kkt[li]), "n_targets": int(res.path.kkt.shape[1]), "config_json": stable_json(eff),
             "logit_gauge": eff.logit_gauge}
            for li, lam in enumerate(eff.lambdas)]


def analysis_tables(res, run_key: str, extra: Mapping[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """The tables of one analysis (edges, per-target metrics, per-class diagnostics, the exact path when
    kept, and `extra` tables), each keyed by `run_key` where its schema has a dependency_run_id."""
    tables = {"dependencies": res.edges, "dependency_metrics": res.per_target, "class_diagnostics": res.per_class,
              **getattr(res, "path_tables", {}), **(extra or {})}  # a Θ-head (§3.2) has no path
    keyed = {t for t in tables if t in TABLES and "dependency_run_id" in TABLES[t].names}
    return {t: df.assign(dependency_run_id=run_key) if t in keyed else df for t, df in tables.items()}


def commit_rows(store: ResultStore, run_key: str, res, runs: list[dict], *, run_id: str, code_version: str,
                extra: Mapping[str, pd.DataFrame] | None = None) -> Path:
    """Commit all tables of a certified analysis at once (the caller checked its certificate)."""
    return store.commit_analysis(run_key, {**analysis_tables(res, run_key, extra), "dependency_runs": runs},
                                 run_id=run_id, code_version=code_version)
