"""One dependency analysis from logits' moments and the effective `DependencyConfig`.

The one composition that the public API (neudep_assets.api) and the dependency assets
(defs/dependency_assets.py, whole or spread over chunk steps) share, so that they cannot drift apart:

- :func:`within_problem` / :func:`between_problem`: the analysis's arrays in its gauge (:class:`Problem`),
  from the raw second moment of the fit logits (within), or from a pair's moments in the gauge
  (:func:`between_moments`, which the between asset saves for its chunk steps);
- :func:`solve`: the CovLasso along the config's λ path, certified, with Table-1 metrics and diagnostics
  (:func:`~neudep_assets.lib.analysis.dependencies.analyse`), in the config's gauge, plus the
  offset-direction share of every solution; :func:`solve_chunk` (one step's targets) and
  :func:`merge_solved` (the commit step) are the same analysis split over steps, row for row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np

from neudep_assets.lib.analysis.dependencies import (ChunkAnalysis, DependencyAnalysis, analyse, analyse_chunk,
                                                     merge_chunks)
from neudep_assets.lib.analysis.moments import second_moment
from neudep_assets.lib.analysis.offsets import apply_gauge, check_gauge, gauge_moment, offset_direction_share_of
from neudep_assets.lib.config import DependencyConfig


@dataclass(frozen=True)
class Problem:
    """An analysis's arrays, all in `gauge`: the fit split's moments (C = E[f fᵀ]; between models also
    cross = E[f gᵀ] and target_second_moment = E[g²]) and the eval split's logits (the source's, and the
    target's between models) and labels."""

    gauge: str
    C: np.ndarray
    eval_source: np.ndarray
    eval_labels: np.ndarray
    cross: np.ndarray | None = None
    target_second_moment: np.ndarray | None = None
    eval_target: np.ndarray | None = None


def within_problem(C_raw: np.ndarray, eval_logits: np.ndarray, eval_labels: np.ndarray, gauge: str) -> Problem:
    """A within-model analysis: the raw second moment of the fit logits (the `moments` asset's C) and the
    raw eval logits, taken into `gauge`."""
    check_gauge(gauge)
    return Problem(gauge=gauge, C=gauge_moment(C_raw, gauge), eval_source=apply_gauge(eval_logits, gauge),
                   eval_labels=eval_labels)


def between_moments(source_fit: np.ndarray, target_fit: np.ndarray, gauge: str) -> dict[str, np.ndarray]:
    """C, cross and target_second_moment of a pair's raw fit logits (same samples), both taken in `gauge`."""
    F, G = apply_gauge(source_fit, gauge), apply_gauge(target_fit, gauge)
    return {"C": second_moment(F), "cross": second_moment(F, G),
            "target_second_moment": (G.astype(np.float64) ** 2).mean(0)}


def between_problem(moments: Mapping[str, np.ndarray], eval_source: np.ndarray, eval_target: np.ndarray,
                    eval_labels: np.ndarray, gauge: str) -> Problem:
    """A between-model analysis: the pair's moments in `gauge` (:func:`between_moments`) and both models'
    raw eval logits, taken into `gauge`."""
    check_gauge(gauge)
    return Problem(gauge=gauge, C=moments["C"], cross=moments["cross"],
                   target_second_moment=moments["target_second_moment"],
                   eval_source=apply_gauge(eval_source, gauge), eval_target=apply_gauge(eval_target, gauge),
                   eval_labels=eval_labels)


def _solver_args(problem: Problem, eff: DependencyConfig, device: str | None) -> dict:
    """The keyword arguments of `analyse` / `analyse_chunk` from the problem and the config."""
    if problem.gauge != eff.logit_gauge:
        raise ValueError(f"the analysis's arrays are in the {problem.gauge} gauge but its config asks for "
                         f"logit_gauge {eff.logit_gauge!r}")
    return dict(eval_source=problem.eval_source, eval_labels=problem.eval_labels, cross=problem.cross,
                target_second_moment=problem.target_second_moment, eval_target=problem.eval_target,
                lambda_mode=eff.lambda_mode, tol=eff.tol, device=device, store_path=eff.store_path,
                gauge=eff.logit_gauge)


def _with_offset_share(res: DependencyAnalysis, C_source: np.ndarray) -> DependencyAnalysis:
    """`res` with `offset_dir_share` in per_target; `C_source`: the source logits' moment in the gauge."""
    res.per_target["offset_dir_share"] = offset_direction_share_of(
        C_source, res.path, res.path.targets, res.per_target["lambda_index"], res.per_target["target_class"])
    return res


def solve(problem: Problem, eff: DependencyConfig, *, device: str | None = None,
          log: Callable[[str], None] | None = None) -> DependencyAnalysis:
    """The whole analysis of every target (in chunks of ``eff.target_chunk``) with its offset share.
    `device`: "cuda…" runs the CovLasso on CUDA, None on CPU threads; `log`: as :func:`analyse`."""
    res = analyse(problem.C, eff.lambdas, target_chunk=eff.target_chunk, log=log,
                  **_solver_args(problem, eff, device))
    return _with_offset_share(res, problem.C)


def solve_chunk(problem: Problem, eff: DependencyConfig, targets, *, device: str | None = None) -> ChunkAnalysis:
    """The per-target part of the analysis for `targets` (one chunk step's)."""
    return analyse_chunk(problem.C, eff.lambdas, np.asarray(targets, dtype=np.int64),
                         **_solver_args(problem, eff, device))


def merge_solved(problem: Problem, eff: DependencyConfig, chunks: list[ChunkAnalysis]) -> DependencyAnalysis:
    """The analysis from the chunks of all targets (:func:`solve_chunk`), with its offset share: the rows of
    :func:`solve`."""
    _solver_args(problem, eff, None)  # the same gauge as the chunks' problem
    res = merge_chunks(problem.C, chunks, cross=problem.cross, target_second_moment=problem.target_second_moment,
                       gauge=eff.logit_gauge)
    return _with_offset_share(res, problem.C)
