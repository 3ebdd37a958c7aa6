"""One dependency analysis: CovLasso along the λ path, Table-1 metrics, and the theory diagnostics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from neudep_assets.lib.analysis import table1, theory
from neudep_assets.lib.analysis.spectral import Spectral, spectral
from neudep_assets.lib.covlasso import CovLassoPath, SparseCoef, concat_paths, path_errors_sparse, refit, solve_path
from neudep_assets.lib.covlasso.gauge import correction, lift, rhs_shift
from neudep_assets.lib.covlasso.path import knot_frames

PATH_TABLES = ("dependency_path_knots", "dependency_path")  # the store tables of an exact path
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


@dataclass
class ChunkAnalysis:
    """The per-target part of an analysis for one chunk of targets (a step of its own when the
    analysis is split): the solved path and, per (λ, target), the fit errors and the Table-1 metrics
    of the lasso and of the least-squares refit on its support."""

    path: CovLassoPath
    metrics: dict[str, np.ndarray]  # column -> (n_lambdas, n_chunk_targets), targets in path order
    path_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # this chunk's exact path (store_path)


def check_target_chunk(target_chunk, where: str = "target_chunk") -> int | None:
    """None/0 (= all targets at once) or a positive int; anything else names the key."""
    if target_chunk is None or (isinstance(target_chunk, (int, np.integer)) and not isinstance(target_chunk, bool)
                                and target_chunk >= 1):
        return None if target_chunk is None else int(target_chunk)
    raise ValueError(f"{where} must be a positive integer (targets per chunk), got {target_chunk!r}")


def target_ranges(n_targets: int, target_chunk: int | None) -> list[tuple[int, int]]:
    """The [start, stop) target ranges of the chunks (one range when target_chunk is None)."""
    step = check_target_chunk(target_chunk) or max(n_targets, 1)
    return [(s0, min(s0 + step, n_targets)) for s0 in range(0, n_targets, step)]


def step_ranges(n_targets: int, n_steps: int) -> list[tuple[int, int]]:
    """The [start, stop) target ranges of `n_steps` steps of near-equal size (empty ones when there are
    more steps than targets)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"chunk_steps must be a positive integer, got {n_steps!r}")
    bounds = [n_targets * k // n_steps for k in range(n_steps + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _excluded(C, cross, targets) -> np.ndarray:
    """Each target's excluded source: itself within, class i < n of the source between (paper Eq. 4), else −1."""
    targets = np.asarray(targets, np.int64)
    return targets.copy() if cross is None else np.where(targets < C.shape[0], targets, -1).astype(np.int64)


def _moments(C, cross, target_second_moment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C symmetrised, M = the right-hand sides' matrix, s = the targets' second moments)."""
    C = theory.check_square(C, "C")
    M = C if cross is None else np.asarray(cross, dtype=np.float64)
    s = np.diag(C) if cross is None else np.asarray(target_second_moment, dtype=np.float64)
    return C, M, s


def analyse_chunk(C: np.ndarray, lambdas, targets, *, eval_source: np.ndarray, eval_labels: np.ndarray,
                  cross: np.ndarray | None = None, target_second_moment: np.ndarray | None = None,
                  eval_target: np.ndarray | None = None, lambda_mode: str = "relative", tol: float = 1e-9,
                  device: str | None = None, store_path: bool = False, gauge: str = "raw") -> ChunkAnalysis:
    """Solve (and certify) the CovLasso of the `targets` and compute everything that is per target:
    err_i along the path (lasso and refit) and the Table-1 metrics on the eval split. Arguments as
    :func:`analyse`."""
    path = solve_path(C, lambdas, cross=cross, targets=np.asarray(targets, dtype=np.int64), lambda_mode=lambda_mode,
                      tol=tol, device=device, knots=store_path, gauge=gauge)
    C, M, s = _moments(C, cross, target_second_moment)
    targets = np.asarray(path.targets)
    excl = _excluded(C, cross, targets)
    coef = path.sparse
    fit_err = path_errors_sparse(C, lift(coef, excl, gauge), M, targets, s[targets])
    ls = refit(C, coef, M, targets, correction=None if gauge == "raw" else (*correction(C, excl, gauge),
                                                                           rhs_shift(M, targets, excl, gauge)))
    fit_err_refit = path_errors_sparse(C, lift(ls, excl, gauge), M, targets, s[targets])
    t1, t1r = table1.table1_metrics_sets(eval_source, eval_labels, [coef, ls], targets, target_logits=eval_target,
                                         excl=excl, gauge=gauge)
    shape = path.kkt.shape  # (n_lambdas, n_targets): the Table-1 frames are λ-major, targets in path order
    metrics = {"fit_err": fit_err}
    metrics.update({c: t1[c].to_numpy().reshape(shape) for c in t1.columns.drop(["lambda_index", "target"])})
    metrics.update({f"{c}_refit": t1r[c].to_numpy().reshape(shape) for c in REFIT_COLUMNS})
    metrics["fit_err_refit"] = fit_err_refit
    path_tables = dict(zip(PATH_TABLES, knot_frames(path.knots, targets, path.lambda_max, M, s,
                                                    rhs_shift(M, targets, excl, gauge)))) if store_path else {}
    return ChunkAnalysis(path=path, metrics=metrics, path_tables=path_tables)


def merge_chunks(C: np.ndarray, chunks: list[ChunkAnalysis], *, cross: np.ndarray | None = None,
                 target_second_moment: np.ndarray | None = None,
                 log: Callable[[str], None] | None = None, gauge: str | None = None) -> DependencyAnalysis:
    """One analysis from the chunks of all targets (in target order, each target once), plus what
    needs the whole of C: one eigendecomposition (low-rank when C's rank is far below n, see
    :func:`spectral`) serves redundancy, Eq. 5 and screening. The rows are those of an unsplit analysis."""
    if not chunks:
        raise ValueError("merge_chunks: no chunks")
    m = C.shape[0] if cross is None else np.asarray(cross).shape[1]
    got = np.concatenate([np.asarray(c.path.targets) for c in chunks])
    if not np.array_equal(got, np.arange(m)):
        raise ValueError(f"merge_chunks: the chunks' targets must be 0..{m - 1} in order, each once; got "
                         f"{len(got)} targets in {len(chunks)} chunks")
    if any(not np.array_equal(c.path.lambdas, chunks[0].path.lambdas) or c.metrics.keys() != chunks[0].metrics.keys()
           for c in chunks):
        raise ValueError("merge_chunks: the chunks come from different λ grids or analyses")
    if any(c.path.gauge != chunks[0].path.gauge for c in chunks) or gauge not in (None, chunks[0].path.gauge):
        raise ValueError(f"merge_chunks: the chunks were solved in gauges {sorted({c.path.gauge for c in chunks})}, "
                         f"the merge asked for {gauge!r}")
    path = chunks[0].path if len(chunks) == 1 else concat_paths([c.path for c in chunks])
    metrics = {k: np.concatenate([c.metrics[k] for c in chunks], axis=1) for k in chunks[0].metrics}
    C, _, s = _moments(C, cross, target_second_moment)
    targets = np.asarray(path.targets)
    say = _progress(log)
    sp = spectral(C, None)
    say(f"eigendecomposition of C ({sp.method}, rank {sp.rank})")
    fit_err = metrics.pop("fit_err")
    fit_err_refit = metrics.pop("fit_err_refit")
    screen = theory.screening(C, path, cross=cross, target_second_moment=target_second_moment, spectral=sp)
    red = theory.redundancy(C, cross=cross, target_second_moment=target_second_moment, spectral=sp, gauge=path.gauge)
    eq5 = theory.eq5_violations(C, path, cross=cross, target_second_moment=target_second_moment, err0=red,
                                err=fit_err, spectral=sp)
    say("screening, redundancy, Eq. 5")
    lam_idx, tgt_pos, src, val = path.sparse.edges()
    edges = pd.DataFrame({"lambda_index": lam_idx, "target_class": targets[tgt_pos], "source_class": src,
                          "coef": val})
    n_l, n_t = path.kkt.shape
    # every frame below is laid out (λ-major, targets in path order): columns line up without a merge
    per_target = pd.DataFrame({
        "lambda_index": np.repeat(np.arange(n_l, dtype=np.int64), n_t), "target_class": np.tile(targets, n_l),
        "lambda_abs": path.lambda_abs.ravel(), "lambda_max": np.tile(path.lambda_max, n_l),
        "kkt": path.kkt.ravel(), "fit_err": fit_err.ravel(),
    })
    for col in [c for c in metrics if not c.endswith("_refit")]:
        per_target[col] = metrics[col].ravel()
    for col in ["n_candidates", "n_nonzero", "thm3_screened", "thm3_violations", "conj1_screened", "conj1_violations"]:
        per_target[col] = screen[col].to_numpy()
    for col in REFIT_COLUMNS:
        per_target[f"{col}_refit"] = metrics[f"{col}_refit"].ravel()
    per_target["fit_err_refit"] = fit_err_refit.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        per_target["unexplained_share"] = (fit_err / s[targets]).ravel()
    per_class = (red.rename(columns={"target": "target_class"})
                 .merge(eq5.rename(columns={"target": "target_class", "n_violations": "eq5_violations",
                                            "max_violation": "eq5_max_violation"}), on="target_class"))
    rank = sp.rank
    per_class["rank"] = rank
    path_tables = {t: pd.concat([c.path_tables[t] for c in chunks], ignore_index=True)
                   for t in chunks[0].path_tables}
    return DependencyAnalysis(path=path, edges=edges, per_target=per_target,
                              per_class=per_class[["target_class", "err0", "rel_err0", "rank", "eq5_violations",
                                                   "eq5_max_violation"]], rank=rank, spectral=sp,
                              path_tables=path_tables)


def analyse(C: np.ndarray, lambdas, *, eval_source: np.ndarray, eval_labels: np.ndarray,
            cross: np.ndarray | None = None, target_second_moment: np.ndarray | None = None,
            eval_target: np.ndarray | None = None, lambda_mode: str = "relative", tol: float = 1e-9,
            device: str | None = None, target_chunk: int | None = None,
            log: Callable[[str], None] | None = None, store_path: bool = False, gauge: str = "raw") -> DependencyAnalysis:
    """Within (cross=None) or between analysis of every target class: :func:`analyse_chunk` of each
    chunk of targets, then :func:`merge_chunks` (the one code path; a Dagster run may run the chunks as
    steps of their own).

    `C` (and `cross`, `target_second_moment`) come from the fit split; `eval_*` are logits of the
    evaluation split (for between, `eval_target` are the target model's logits of the same samples).
    `target_chunk`: solve (and certify) the targets this many at a time; the analysis is the same, row
    for row. Everything after the solve reads the sparse coefficients. `log`: called with a progress
    line after each chunk and each later stage (elapsed seconds since the start). `store_path`: also keep
    each target's exact path from λ_max to the smallest λ (``path_tables``; solved by the numba homotopy
    even when `device` is CUDA). `gauge`: "raw" (the paper's), or "centered": `C`, `cross`,
    `target_second_moment` and the eval logits are those of the centred logits (``offsets.gauge_moment``,
    ``offsets.apply_gauge``), and each target's sources are re-centred by the mean over the other classes, so
    that the target never enters its own sources (:mod:`~neudep_assets.lib.covlasso.gauge`).
    """
    m = C.shape[0] if cross is None else np.asarray(cross).shape[1]
    kw = dict(eval_source=eval_source, eval_labels=eval_labels, cross=cross, target_second_moment=target_second_moment,
              eval_target=eval_target, lambda_mode=lambda_mode, tol=tol, device=device, store_path=store_path,
              gauge=gauge)
    say, chunks = _progress(log), []
    for a, b in target_ranges(m, target_chunk):
        chunks.append(analyse_chunk(C, lambdas, np.arange(a, b), **kw))
        say(f"targets {a}–{b - 1} of {m} solved, with their fit errors, refit and Table-1 metrics")
    return merge_chunks(C, chunks, cross=cross, target_second_moment=target_second_moment, log=log)


def _progress(log: Callable[[str], None] | None) -> Callable[[str], None]:
    """A progress callback that appends the seconds since it was made (a no-op without `log`)."""
    t0 = time.perf_counter()

    def say(what: str) -> None:
        if log is not None:
            log(f"{what} ({time.perf_counter() - t0:.1f} s)")
    return say


_PATH_ARRAYS = ("lambda_abs", "lambda_max", "kkt", "n_active", "status", "breakpoints", "targets", "lambdas")
#: path_info = [lambda_mode, mode, device, gauge] (artifacts written before the gauge was kept: raw)


def chunk_to_arrays(chunk: ChunkAnalysis) -> dict[str, np.ndarray]:
    """A chunk as plain arrays (for an npz artifact passed between steps; no pickles)."""
    p = chunk.path
    out = {f"path_{k}": np.asarray(getattr(p, k)) for k in _PATH_ARRAYS}
    out.update(coef_indptr=p.sparse.indptr, coef_indices=p.sparse.indices, coef_data=p.sparse.data,
               coef_shape=np.asarray(p.sparse.shape, dtype=np.int64),
               path_info=np.asarray([p.lambda_mode, p.mode, p.device, p.gauge]),
               path_tol_seconds=np.asarray([p.tol, p.seconds]))
    out.update({f"metric_{k}": v for k, v in chunk.metrics.items()})
    for t, df in chunk.path_tables.items():
        out.update({f"pathtable_{t}__{c}": df[c].to_numpy() for c in df.columns})
    return out


def chunk_from_arrays(arrays: dict[str, np.ndarray]) -> ChunkAnalysis:
    """The inverse of :func:`chunk_to_arrays`."""
    info = [str(x) for x in arrays["path_info"]]
    lambda_mode, mode, device = info[:3]
    gauge = info[3] if len(info) > 3 else "raw"
    tol, seconds = (float(x) for x in arrays["path_tol_seconds"])
    sparse = SparseCoef(arrays["coef_indptr"], arrays["coef_indices"], arrays["coef_data"],
                        tuple(int(x) for x in arrays["coef_shape"]))
    path = CovLassoPath(sparse=sparse, **{k: arrays[f"path_{k}"] for k in _PATH_ARRAYS}, lambda_mode=lambda_mode,
                        mode=mode, tol=tol, seconds=seconds, device=device, gauge=gauge)
    tables: dict[str, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        if k.startswith("pathtable_"):
            t, c = k[len("pathtable_"):].split("__", 1)
            tables.setdefault(t, {})[c] = v
    return ChunkAnalysis(path=path, metrics={k[len("metric_"):]: v for k, v in arrays.items()
                                             if k.startswith("metric_")},
                         path_tables={t: pd.DataFrame(cols) for t, cols in tables.items()})


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
