"""Dependency assets: within-model CovLasso per model, between-model per ordered model pair."""

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from neudep_assets.defs.automation import FOLLOW_INPUTS
from neudep_assets.defs.checks import CERTIFIED, certificate, certificate_spec
from neudep_assets.defs.partitions import (SOURCE, TARGET, models_partitions, pairs_partitions, parse_pair,
                                          uncomputed_note)
from neudep_assets.defs.report import picture, picture_list, pictures
from neudep_assets.defs.resources import Neudep
from neudep_assets.defs.store_keys import record_current, store_keys
from neudep_assets.lib.report import plots
from neudep_assets.lib.analysis import best_targets, summarize
from neudep_assets.lib.analysis.dependencies import chunk_from_arrays, chunk_to_arrays, step_ranges, target_ranges
from neudep_assets.lib.report import fig3_png
from neudep_assets.lib.config import DependencyConfig, stable_hash
from neudep_assets.lib.data import PreparedDataset
from neudep_assets.lib.report import star_pictures
from neudep_assets.lib.analysis.moments import LogitsError, check_aligned
from neudep_assets.lib.analysis.offsets import other_gauge
from neudep_assets.lib.analysis.problem import (Problem, between_moments, between_problem, merge_solved, solve,
                                                solve_chunk, within_problem)
from neudep_assets.lib.analysis.store_rows import (DEPENDENCIES_CODE_VERSION, DEPENDENCIES_SCIENCE,  # noqa: F401
                                                   commit_rows, identity, run_rows as _run_rows)
from neudep_assets.lib.store import ResultStore, load_arrays, save_arrays


class DependenciesConfig(dg.Config):
    """Launchpad overrides of `dependencies:` in neudep.yaml (unset = the project value)."""

    lambdas: Optional[list[float]] = None
    lambda_mode: Optional[str] = None
    tol: Optional[float] = None
    target_chunk: Optional[int] = None  # targets solved (and certified) per chunk
    logit_gauge: Optional[str] = None  # raw | centered (each sample's logits minus their mean over the classes)
    store_path: Optional[bool] = None  # keep each target's exact path (knots) in the store


def _effective(project_dep: DependencyConfig, override: DependenciesConfig) -> DependencyConfig:
    set_ = {k: v for k, v in override.model_dump().items() if v is not None}
    if "lambdas" in set_:
        set_["lambdas"] = tuple(set_["lambdas"])
    eff = dataclasses.replace(project_dep, **set_)
    eff.validate("run config")
    return eff


def _solver_device(neudep: Neudep) -> str | None:
    """The configured device for the CovLasso: CUDA runs the batched torch homotopy; cpu and mps (no
    float64) the numba one. A device that does not exist is an error here, before any work."""
    dev = neudep.pick_device()
    return dev if dev.startswith("cuda") else None


def _crosscheck(eff: DependencyConfig) -> DependencyConfig | None:
    """The other gauge's analysis at the one λ closest to 0.1 (cheap), or None when switched off."""
    if not eff.gauge_crosscheck:
        return None
    return dataclasses.replace(eff, lambdas=(eff.lambdas[_reference_lambda(eff)],),
                               logit_gauge=other_gauge(eff.logit_gauge), gauge_crosscheck=False)


def _write_results(store: ResultStore, run_key: str, res, run_rows: list[dict], run_id: str, *,
                   eff: DependencyConfig, class_names,
                   extra: Mapping[str, pd.DataFrame] | None = None,
                   code_version: str = DEPENDENCIES_CODE_VERSION) -> dg.AssetCheckResult:
    """Certify one analysis, then commit all its tables at once (`extra`: further tables of the
    analysis, by table name; `code_version`: of the asset writing it). Returns the certificate; an
    uncertified analysis is not written."""
    check = certificate(res.per_target, eff.tol, eff.lambdas, class_names, run_key=run_key, rows=run_rows)
    if check.passed:
        commit_rows(store, run_key, res, run_rows, run_id=run_id, code_version=code_version, extra=extra)
    return check


def _refused(run_key: str, check: dg.AssetCheckResult) -> dg.Failure:
    m = {k: v.value for k, v in check.metadata.items()}
    return dg.Failure(description=f"analysis {run_key}: {m['uncertified_solutions']} of {m['solutions']} CovLasso "
                      f"solutions exceed tol = {m['tolerance']:g} (relative KKT), so nothing was written; worst: "
                      + "; ".join(m["worst_targets"].replace("- ", "").splitlines()))


def _stored_certificate(store: ResultStore, run_key: str, class_names) -> dg.AssetCheckResult:
    runs = store.read("dependency_runs", run_key).sort_values("lambda_index")
    return certificate(store.read("dependency_metrics", run_key), float(runs["tol"].max()),
                       runs["lambda_value"].tolist(), class_names, run_key=run_key, rows=runs)


def _reference_lambda(eff: DependencyConfig) -> int:
    """Index of the λ the UI pictures use: the one closest to 0.1 (λ_rel in the paper's range)."""
    return int(np.argmin(np.abs(np.asarray(eff.lambdas) - 0.1)))


def _share_or_na(eff: DependencyConfig, share: float) -> float | dg.MetadataValue:
    """A share at the reference λ, reported as "at λ_rel = 0.1" only when the analysis holds that λ:
    otherwise "not available" (never a number of another λ, never 0)."""
    lam = eff.lambdas[_reference_lambda(eff)]
    if eff.lambda_mode == "relative" and abs(lam - 0.1) < 1e-9:
        return float(share)
    return dg.MetadataValue.text(f"not available: this analysis has no λ_rel = 0.1 ({eff.lambda_mode} λ grid "
                                 f"{', '.join(f'{x:g}' for x in eff.lambdas)})")


def _readable(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-λ summary as a person reads it: shares and errors in %, losses in points, n/a for none."""
    pct = lambda v: "n/a" if pd.isna(v) else f"{100 * v:.1f}%"  # noqa: E731
    pts = lambda v: "n/a" if pd.isna(v) else f"{v:.1f} pts"  # noqa: E731
    return pd.DataFrame({
        "λ_rel": summary["lambda"].map("{:g}".format), "targets": summary["targets"],
        "with a dependency": [f"{w} ({pct(s)})" for w, s in zip(summary["with_dependency"], summary["share_with_dependency"])],
        "median sources": summary["median_sources"].map("{:g}".format),
        "median Rel Err": summary["median_rel_err"].map(pct),
        "mean Acc loss": summary["acc_loss_pts"].map(pts),
        "median Pos Acc loss (with a dependency)": summary["pos_acc_loss_pts_dep_median"].map(pts),
        "worst KKT": summary["max_kkt"].map("{:.1e}".format)})


def _save_fig3(store: ResultStore, run_key: str, res, eff: DependencyConfig, ds: PreparedDataset, C, title: str,
               **between) -> None:
    li = _reference_lambda(eff)
    best = best_targets(res.per_target, li, 1)
    if best:
        store.save_png(run_key, "fig3", fig3_png(C, res, best[0], li, title=f"{title}: {ds.class_names[best[0]]}, "
                                                 f"λ={eff.lambdas[li]:g}", **between))


def _publish(store: ResultStore, run_key: str, eff: DependencyConfig, ds: PreparedDataset, title: str) -> dict:
    """UI metadata read back from the store: per-λ summary table, plots, star pictures (saved beside
    Fig. 3 under artifacts/plots/<run_key>/, shown inline as compact PNGs)."""
    per_target = store.read("dependency_metrics", run_key)
    per_target["lambda_rel"] = per_target["lambda_abs"] / per_target["lambda_max"]
    edges = store.read("dependencies", run_key)
    diag = store.read("class_diagnostics", run_key)
    summary = summarize(per_target, eff.lambdas)
    li = _reference_lambda(eff)
    stars = star_pictures(edges, per_target, ds, li, best_targets(per_target, li, eff.star_plots), title,
                          eff.lambdas[li])
    run = store.read("dependency_runs", run_key).iloc[0]
    share = summary["share_with_dependency"].iloc[li]
    rank, n = int(diag["rank"].iloc[0]), len(diag)
    screened = per_target["conj1_screened"].sum()
    return {
        "summary": dg.MetadataValue.md(
            f"**{100 * share:.1f}%** of {n} targets have a dependency at λ_rel = {eff.lambdas[li]:g} (1–10 sources, "
            f"Rel Err ≤ 20%; the table below: every λ). Every solution certified: worst relative KKT "
            f"{per_target['kkt'].max():.1e}. Rank of C: {rank} of {n} (a head of width d gives rank ≤ d + 1; "
            f"below n, every class is an exact linear combination of the others as λ → 0). Theorem 3: "
            f"{int(per_target['thm3_violations'].sum())} violations (a safe rule); Conjecture 1: wrong for "
            f"{100 * per_target['conj1_violations'].sum() / max(screened, 1):.2f}% of the {int(screened)} sources it "
            f"screens (a heuristic). Eq. 5: {int(diag['eq5_violations'].sum())} violations."),
        "explore": dg.MetadataValue.url(  # `neudep explore` serves it (default address)
            f"http://127.0.0.1:8765/model/{run['model']}?source={run['source_model']}"
            f"&gauge={run.get('logit_gauge') or 'raw'}&run={run_key}"),
        "lambda_summary": dg.MetadataValue.md(_readable(summary).to_markdown(index=False)),
        "share_with_dependency_at_0.1": _share_or_na(eff, share),
        "reference_lambda": float(eff.lambdas[li]),
        "max_kkt": float(f"{per_target['kkt'].max():.3g}"),
        "rank": int(diag["rank"].iloc[0]),
        "eq5_violations": int(diag["eq5_violations"].sum()),
        "thm3_violations": int(per_target["thm3_violations"].sum()),
        "conj1_violation_rate": float(f"{per_target['conj1_violations'].sum() / max(screened, 1):.3g}"),
        **pictures(store, run_key, {"sparsity_plot": ("sparsity", plots.sparsity_plot(per_target)),
                                    "screening_plot": ("screening (Theorem 3, Conjecture 1)",
                                                       plots.screening_plot(per_target))}),
        **picture_list(store, run_key, "strongest_dependencies", stars),
        **(picture(fig3, "Fig. 3") if (fig3 := store.artifacts_dir / "plots" / run_key / "fig3.png").is_file() else {}),
        "dependency_run_id": run_key,
    }


def _within(context, store: ResultStore, eff: DependencyConfig, ds: PreparedDataset, logits: dict, moments: dict,
            ev: dict, *, pictures: bool, device: str | None) -> tuple[str, dg.AssetCheckResult]:
    """One within-model analysis in ``eff.logit_gauge`` (the gauge is part of its key): found in the
    store, or solved, certified and committed. Returns its dependency_run_id and its certificate (an
    uncertified analysis is not written)."""
    run_key = "within-" + stable_hash({"moments": moments["moments_id"], "eval": ev["logit_set_id"], "cfg": identity(eff),
                                       "code": DEPENDENCIES_CODE_VERSION})
    with store.lock(f"analyses/{run_key}"):  # one writer per analysis: a second one waits, then finds it
        if store.has_analysis(run_key):
            context.log.info(f"dependencies {run_key} ({eff.logit_gauge} gauge) already in the store")
            return run_key, _stored_certificate(store, run_key, ds.class_names)
        e = load_arrays(ev["path"])
        pb = within_problem(load_arrays(moments["path"])["C"], e["logits"], e["labels"], eff.logit_gauge)
        context.log.info(f"CovLasso ({eff.logit_gauge} gauge): {pb.C.shape[0]} targets × {len(eff.lambdas)} λ")
        t0 = time.perf_counter()
        res = solve(pb, eff, device=device)
        context.log.info(f"solved in {time.perf_counter() - t0:.1f}s; worst relative KKT "
                         f"{res.path.kkt.max():.1e} (tol {eff.tol:g}), rank of C {res.rank}")
        check = _write_results(store, run_key, res, _run_rows(
            run_key, "within", eff, res, model=logits["model"], sha=logits["checkpoint_sha256"],
            source_model=logits["model"], source_sha=logits["checkpoint_sha256"], dataset_id=ds.dataset_id,
            moments_id=moments["moments_id"]), context.run.run_id, eff=eff, class_names=ds.class_names)
        if check.passed and pictures:
            _save_fig3(store, run_key, res, eff, ds, pb.C, logits["model"])
    return run_key, check


def _share_at(store: ResultStore, run_key: str, lambda_index: int) -> float:
    """Share of classes with a dependency in one stored analysis at one λ index."""
    per_target = store.read("dependency_metrics", run_key)
    at = per_target[per_target["lambda_index"] == lambda_index].assign(lambda_index=0)
    return float(summarize(at, [0.0])["share_with_dependency"].iloc[0])


# -- the dependency assets as graphs: plan → chunk steps → merge and commit --------------------------
# A huge head spreads its CovLasso over the executor's workers (e.g. Dask): with `chunk_steps: K` in
# neudep.yaml each analysis has K chunk steps, each solving its share of the targets with their
# per-target metrics (lib `problem.solve_chunk`, in-process sub-chunks of `target_chunk`) and handing
# npz artifacts (never pickles) to the commit step, which merges them (lib `problem.merge_solved`: the
# whole-analysis diagnostics, the offset share), certifies and commits ONE analysis, row for row the one
# an unsplit run (`problem.solve`, which the API calls too) commits. The fan-out is static (K fixed by
# the config when the code location loads), not Dagster's DynamicOut: dagster-dask runs only the steps
# of the static plan (dagster-io/dagster#9785).


def _plan_eff(neudep: Neudep, plan: dict) -> DependencyConfig:
    return _effective(neudep.project().dependencies, DependenciesConfig(**plan["override"]))


def _chunk_outputs(store: ResultStore, run_key: str | None, n_targets: int, n_steps: int):
    """The targets of each chunk step ([start, stop); None when there is nothing to solve: the analysis
    is committed already, and the commit step reads it back)."""
    done = run_key is None or store.has_analysis(run_key)
    for k, (a, b) in enumerate(step_ranges(n_targets, n_steps)):
        yield dg.Output({"targets": None if done else [a, b]}, output_name=f"chunk_{k}")


def _problem(plan: dict, eff: DependencyConfig) -> Problem:
    """The arrays of a planned analysis in its gauge, from the store's artifacts."""
    if plan["kind"] == "within":
        e = load_arrays(plan["eval"]["path"])
        return within_problem(load_arrays(plan["moments_path"])["C"], e["logits"], e["labels"], eff.logit_gauge)
    ev_f, ev_g = (load_arrays(plan[k]["path"]) for k in ("eval_f", "eval_g"))
    return between_problem(load_arrays(plan["problem_path"]), ev_f["logits"], ev_g["logits"], ev_g["labels"],
                           eff.logit_gauge)


def _chunk_outs(n_steps: int) -> dict:
    return {"plan": dg.Out(dict), **{f"chunk_{k}": dg.Out(dict) for k in range(n_steps)}}


def _within_plan_op(n_steps: int) -> dg.OpDefinition:
    @dg.op(name="dependencies_plan", out=_chunk_outs(n_steps))
    def dependencies_plan(context: dg.OpExecutionContext, config: DependenciesConfig, neudep: Neudep, dataset: dict,
                          logits: dict, moments: dict):
        """The within-model analysis's key and the targets of each chunk step."""
        eff = _effective(neudep.project().dependencies, config)
        ev = logits["splits"][eff.eval_split]
        run_key = "within-" + stable_hash({"moments": moments["moments_id"], "eval": ev["logit_set_id"],
                                           "cfg": identity(eff), "code": DEPENDENCIES_CODE_VERSION})
        yield dg.Output({"kind": "within", "run_key": run_key, "override": config.model_dump(), "dataset": dataset,
                         "logits": logits, "moments_id": moments["moments_id"], "moments_path": moments["path"],
                         "eval": ev}, output_name="plan")
        yield from _chunk_outputs(neudep.store(), run_key, len(PreparedDataset.from_json(dataset).class_names),
                                  n_steps)
    return dependencies_plan


def _between_plan_op(n_steps: int) -> dg.OpDefinition:
    @dg.op(name="between_dependencies_plan", out=_chunk_outs(n_steps))
    def between_dependencies_plan(context: dg.OpExecutionContext, config: DependenciesConfig, neudep: Neudep,
                                  dataset: dict, moments: dict, target_logits: dict):
        """The between-model analysis's key, its moments (C, E[f gᵀ], E[g²], saved for the chunk steps)
        and the targets of each chunk step; source = target (the within analysis) or a derived model:
        nothing."""
        store, project = neudep.store(), neudep.project()
        eff = _effective(project.dependencies, config)
        src, tgt = parse_pair(context.partition_key)
        note = uncomputed_note(src, tgt, project.regularization.derived())
        plan = {"kind": "between", "override": config.model_dump(), "dataset": dataset, "source": src,
                "target": tgt, "run_key": None, "uncomputed": note}
        n_targets = 0  # nothing to solve
        if note is None:
            ds = PreparedDataset.from_json(dataset)
            n_targets = len(ds.class_names)
            f, g = moments["logits"], target_logits
            for side in (f, g):
                if side["dataset_id"] != ds.dataset_id:
                    raise LogitsError(f"model pair {src}->{tgt}: logits of {side['model']} are of dataset "
                                      f"{side['dataset_id']}, not {ds.dataset_id}; rematerialize logits[{side['model']}]")
            fit_f, fit_g = f["splits"][eff.fit_split], g["splits"][eff.fit_split]
            ev_f, ev_g = f["splits"][eff.eval_split], g["splits"][eff.eval_split]
            plan.update(run_key="between-" + stable_hash({"fit": [fit_f["logit_set_id"], fit_g["logit_set_id"]],
                                                          "eval": [ev_f["logit_set_id"], ev_g["logit_set_id"]],
                                                          "cfg": identity(eff), "code": DEPENDENCIES_CODE_VERSION}),
                        eval_f=ev_f, eval_g=ev_g, model_sha=g["checkpoint_sha256"], source_sha=f["checkpoint_sha256"],
                        moments_id=f"{fit_f['logit_set_id']}-x-{fit_g['logit_set_id']}")
            if not store.has_analysis(plan["run_key"]):
                plan["problem_path"] = str(_between_problem(store, plan["run_key"], eff, src, tgt, fit_f, fit_g,
                                                            ev_f, ev_g))
        yield dg.Output(plan, output_name="plan")
        yield from _chunk_outputs(store, plan["run_key"], n_targets, n_steps)
    return between_dependencies_plan


def _between_problem(store: ResultStore, run_key: str, eff: DependencyConfig, src: str, tgt: str, fit_f, fit_g, ev_f,
                     ev_g) -> Path:
    """Check the pair's logits (class counts, aligned samples) and save its moments in the analysis's
    gauge (both models' logits in the same gauge) for the chunk steps."""
    arrays = {k: load_arrays(v["path"]) for k, v in {"fit_f": fit_f, "fit_g": fit_g, "ev_f": ev_f, "ev_g": ev_g}.items()}
    for split in ("fit", "ev"):
        a, b = arrays[f"{split}_f"], arrays[f"{split}_g"]
        if a["logits"].shape[1] != b["logits"].shape[1]:
            raise LogitsError(f"model pair {src}->{tgt}: {src} has {a['logits'].shape[1]} classes, "
                              f"{tgt} has {b['logits'].shape[1]}")
        check_aligned(a["sample_ids"], b["sample_ids"], src, tgt)
    path = store.artifact("dependency_problems", run_key)
    if not path.is_file():
        save_arrays(path, **between_moments(arrays["fit_f"]["logits"], arrays["fit_g"]["logits"], eff.logit_gauge))
    return path


@dg.op
def dependency_chunk(context: dg.OpExecutionContext, neudep: Neudep, plan: dict, chunk: dict) -> dict:
    """Solve (and certify) the CovLasso of this step's targets with their per-target metrics, in
    sub-chunks of `target_chunk`; each sub-chunk is an npz artifact (content-addressed: a retried run
    finds it)."""
    if chunk["targets"] is None or chunk["targets"][0] == chunk["targets"][1]:
        return {**chunk, "parts": []}
    a, b = chunk["targets"]
    store, eff = neudep.store(), _plan_eff(neudep, plan)
    parts, pb = [], None
    for s0, s1 in target_ranges(b - a, eff.target_chunk):
        path = store.artifact("dependency_chunks", f"{plan['run_key']}-{a + s0}-{a + s1}")
        if not path.is_file():
            pb = pb or _problem(plan, eff)
            t0 = time.perf_counter()
            res = solve_chunk(pb, eff, np.arange(a + s0, a + s1), device=_solver_device(neudep))
            context.log.info(f"CovLasso ({eff.logit_gauge} gauge) of targets {a + s0}..{a + s1 - 1} × "
                             f"{len(eff.lambdas)} λ in {time.perf_counter() - t0:.1f}s; worst relative KKT "
                             f"{res.path.kkt.max():.1e}")
            save_arrays(path, **chunk_to_arrays(res))
        parts.append({"targets": [a + s0, a + s1], "path": str(path)})
    return {**chunk, "parts": parts}


def _merge_and_commit(context, store: ResultStore, plan: dict, eff: DependencyConfig, ds: PreparedDataset,
                      chunks: list[dict], title: str) -> dg.AssetCheckResult:
    """Merge the chunk artifacts into one analysis, certify it and commit it (all its tables at once, or
    nothing), with its Fig. 3; the chunk artifacts are removed once merged."""
    run_key = plan["run_key"]
    with store.lock(f"analyses/{run_key}"):  # one writer per analysis: a second one waits, then finds it
        if store.has_analysis(run_key):
            context.log.info(f"dependencies {run_key} ({eff.logit_gauge} gauge) already in the store")
            return _stored_certificate(store, run_key, ds.class_names)
        if any(c["targets"] is None for c in chunks):
            raise dg.Failure(f"analysis {run_key} was in the store when this run planned it and is gone now; "
                             "rerun the asset")
        parts = sorted((p for c in chunks for p in c["parts"]), key=lambda p: p["targets"][0])
        pb = _problem(plan, eff)
        res = merge_solved(pb, eff, [chunk_from_arrays(load_arrays(p["path"])) for p in parts])
        context.log.info(f"{len(parts)} chunk(s) of {len(chunks)} step(s) merged; worst relative KKT "
                         f"{res.path.kkt.max():.1e} (tol {eff.tol:g}), rank of C {res.rank}")
        if plan["kind"] == "within":
            lg = plan["logits"]
            rows = _run_rows(run_key, "within", eff, res, model=lg["model"], sha=lg["checkpoint_sha256"],
                             source_model=lg["model"], source_sha=lg["checkpoint_sha256"], dataset_id=ds.dataset_id,
                             moments_id=plan["moments_id"])
        else:
            rows = _run_rows(run_key, "between", eff, res, model=plan["target"], sha=plan["model_sha"],
                             source_model=plan["source"], source_sha=plan["source_sha"], dataset_id=ds.dataset_id,
                             moments_id=plan["moments_id"])
        check = _write_results(store, run_key, res, rows, context.run.run_id, eff=eff, class_names=ds.class_names)
        if check.passed:
            _save_fig3(store, run_key, res, eff, ds, pb.C, title, **(
                {} if pb.cross is None else {"cross": pb.cross, "target_second_moment": pb.target_second_moment}))
    for p in parts:  # merged (committed, or refused: a rerun would be refused the same)
        Path(p["path"]).unlink(missing_ok=True)
    if plan.get("problem_path"):
        Path(plan["problem_path"]).unlink(missing_ok=True)
    return check


def _within_commit(context: dg.AssetExecutionContext, neudep: Neudep, plan: dict, chunks: list[dict]):
    """Merge the chunks, certify and commit the analysis; then the other gauge's cross-check (one λ, in
    this step) and the UI metadata."""
    store, eff = neudep.store(), _plan_eff(neudep, plan)
    ds = PreparedDataset.from_json(plan["dataset"])
    logits, run_key = plan["logits"], plan["run_key"]
    check = _merge_and_commit(context, store, plan, eff, ds, chunks, logits["model"])
    if not check.passed:
        yield check
        raise _refused(run_key, check)
    shares, other_key = {eff.logit_gauge: None}, None
    if (other := _crosscheck(eff)) is not None:
        moments = {"moments_id": plan["moments_id"], "path": plan["moments_path"]}
        other_key, other_check = _within(context, store, other, ds, logits, moments, plan["eval"], pictures=False,
                                         device=_solver_device(neudep))
        if not other_check.passed:
            yield other_check.with_metadata({**other_check.metadata, "crosscheck_run_id": other_key})
            raise _refused(other_key, other_check)
        shares[other.logit_gauge] = _share_or_na(eff, _share_at(store, other_key, 0))
        check = check.with_metadata({**check.metadata, "crosscheck_run_id": other_key,
                                     "crosscheck_max_relative_kkt": other_check.metadata["max_relative_kkt"]})
    meta = _publish(store, run_key, eff, ds, logits["model"])
    shares[eff.logit_gauge] = meta["share_with_dependency_at_0.1"]
    meta.update({f"share_with_dependency_{g}_gauge": v for g, v in shares.items()})
    meta["logit_gauge"] = eff.logit_gauge
    model = context.partition_key
    current = [("primary", eff.logit_gauge, run_key)] + ([("crosscheck", other.logit_gauge, other_key)] if other_key else [])
    pointer = record_current(store, "within", model, model, current, run_id=context.run.run_id,
                             code_version=DEPENDENCIES_CODE_VERSION)
    meta.update(store_keys(tables=[("current_analyses", pointer)], analyses=[k for _, _, k in current]))
    context.add_asset_metadata(meta)  # on the materialization only (see defs/report.py)
    yield dg.Output({"dependency_run_id": run_key, "kind": "within", "model": logits["model"],
                     "logit_gauge": eff.logit_gauge, "crosscheck_run_id": other_key}, output_name="result",
                    data_version=dg.DataVersion(run_key))
    yield check


def _between_commit(context: dg.AssetExecutionContext, neudep: Neudep, plan: dict, chunks: list[dict]):
    """Merge the chunks, certify and commit the between-model analysis, then the UI metadata."""
    src, tgt = plan["source"], plan["target"]
    if note := plan.get("uncomputed"):
        yield dg.Output({"dependency_run_id": None, "kind": "within" if src == tgt else "none", "model": tgt,
                         "source_model": src}, output_name="result",
                        data_version=dg.DataVersion(f"same-model-{src}" if src == tgt else f"not-computed-{src}|{tgt}"),
                        metadata={"computed": False, "note": note})
        yield dg.AssetCheckResult(check_name=CERTIFIED, passed=True, metadata={"solutions": 0, "note": (
            f"certified as dependencies[{src}]" if src == tgt else "nothing computed")})
        return
    store, eff = neudep.store(), _plan_eff(neudep, plan)
    ds = PreparedDataset.from_json(plan["dataset"])
    run_key = plan["run_key"]
    check = _merge_and_commit(context, store, plan, eff, ds, chunks, f"{src}→{tgt}")
    if not check.passed:
        yield check
        raise _refused(run_key, check)
    meta = _publish(store, run_key, eff, ds, f"{src}→{tgt}")
    meta["logit_gauge"] = eff.logit_gauge
    pointer = record_current(store, "between", src, tgt, [("primary", eff.logit_gauge, run_key)],
                             run_id=context.run.run_id, code_version=DEPENDENCIES_CODE_VERSION)
    meta.update(store_keys(tables=[("current_analyses", pointer)], analyses=[run_key]))
    context.add_asset_metadata(meta)  # on the materialization only (see defs/report.py)
    yield dg.Output({"dependency_run_id": run_key, "kind": "between", "model": tgt, "source_model": src,
                     "logit_gauge": eff.logit_gauge}, output_name="result",
                    data_version=dg.DataVersion(run_key))
    yield check


def _commit_op(name: str, body, n_steps: int) -> dg.OpDefinition:
    """The commit step of an analysis with `n_steps` chunk steps: one input per chunk step (not a fan-in
    list: dagster-dask loads a fan-in's sources only when it knows them produced, which it never does)."""
    @dg.op(name=name, description=body.__doc__,
           ins={"plan": dg.In(dict), **{f"chunk_{k}": dg.In(dict) for k in range(n_steps)}},
           out={"result": dg.Out(dict), f"{name.removesuffix('_commit')}_certified": dg.Out()})
    def commit(context: dg.AssetExecutionContext, neudep: Neudep, plan: dict, **chunks):
        yield from body(context, neudep, plan, [chunks[f"chunk_{k}"] for k in range(n_steps)])
    return commit


_LAUNCHPAD_FIELDS = {  # DependenciesConfig's fields: (Dagster type, what the Launchpad says of it)
    "lambdas": ([float], "the λ grid (relative: fractions of each target's λ_max)"),
    "lambda_mode": (str, "relative | absolute"),
    "tol": (float, "relative KKT tolerance of the certificate"),
    "target_chunk": (dg.Noneable(int), "targets solved (and certified) per chunk; null: all at once"),
    "logit_gauge": (str, "raw | centered (each sample's logits minus their mean over the classes)"),
    "store_path": (bool, "keep each target's exact path (knots) in the store"),
}


def _launchpad(plan_op: str, project: DependencyConfig = DependencyConfig()) -> dg.ConfigMapping:
    """The Launchpad's config of a dependency asset (`ops: {<asset>: {config: ...}}`), handed to its plan
    step. Each field's default is `project`'s value (neudep.yaml when the code location loaded), so
    "Scaffold missing config" writes them out to edit; a value left at that default maps to unset (the
    project's value at run time, even when neudep.yaml changed since), an edited one overrides it."""
    shown = {k: list(v) if isinstance(v, tuple) else v for k, v in
             ((k, getattr(project, k)) for k in _LAUNCHPAD_FIELDS)}
    schema = {k: dg.Field(t, default_value=shown[k], is_required=False, description=f"{about} (neudep.yaml: {shown[k]})")
              for k, (t, about) in _LAUNCHPAD_FIELDS.items()}

    @dg.config_mapping(config_schema=schema)
    def launchpad(config: dict) -> dict:
        override = {k: None if v == shown[k] else v for k, v in config.items()}
        return {plan_op: {"config": DependenciesConfig(**override).model_dump()}}
    return launchpad


_WITHIN_DOC = """Within-model dependencies: CovLasso for every class over the λ path (fit on the fit split),
    the paper's Table-1 metrics on the eval split, redundancy, Eq. 5 and screening diagnostics, in the
    configured logit gauge (raw, the paper's; or centered), plus the other gauge at λ_rel ≈ 0.1 as a
    cross-check: a share that vanishes once each sample's mean logit is removed was the offset.
    `chunk_steps` (neudep.yaml) spreads the targets over that many steps (the executor's workers), merged
    into one analysis. Each analysis (the cross-check too) commits all its tables at once, and only when
    certified (KKT ≤ tol)."""

_BETWEEN_DOC = """Between-model dependencies (paper Eq. 4) of the pair source|target: each logit g_i of the
    target model regressed on the source model's logits except class i, from logits of the same samples;
    Table-1 metrics with g's logit i replaced. Reads only its two models (the source's moments, which
    carry its logits, and the target's `target_logits`). Both models' logits are taken in the configured
    gauge (centered: each minus its own per-sample mean). `chunk_steps` spreads the targets over that many
    steps, merged into one analysis. Committed at once, and only when certified (KKT ≤ tol).
    source = target is the within-model analysis (`dependencies`): nothing is computed for it."""


def dependency_assets(chunk_steps: int = 1, project: DependencyConfig = DependencyConfig()
                      ) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """`dependencies` and `between_dependencies` with `chunk_steps` chunk steps per analysis; the
    Launchpad shows `project`'s values (neudep.yaml's `dependencies:`) as the config's defaults."""
    within_plan, between_plan = _within_plan_op(chunk_steps), _between_plan_op(chunk_steps)

    within_commit = _commit_op("dependencies_commit", _within_commit, chunk_steps)
    between_commit = _commit_op("between_dependencies_commit", _between_commit, chunk_steps)

    def fan(plan, chunks) -> dict:
        """Each chunk step's solved chunk, as the commit step's input `chunk_<k>`."""
        return {f"chunk_{k}": dependency_chunk.alias(f"dependency_chunk_{k}")(plan, c) for k, c in enumerate(chunks)}

    @dg.graph_asset(name="dependencies", description=_WITHIN_DOC, partitions_def=models_partitions,
                    code_version=DEPENDENCIES_CODE_VERSION, group_name="dependencies", kinds={"numpy"},
                    check_specs=[certificate_spec("dependencies")], automation_condition=FOLLOW_INPUTS,
                    config=_launchpad("dependencies_plan", project))
    def within(dataset: dict, logits: dict, moments: dict):
        plan, *chunks = within_plan(dataset, logits, moments)
        out = within_commit(plan, **fan(plan, chunks))
        return {"result": out.result, "dependencies_certified": out.dependencies_certified}

    @dg.graph_asset(name="between_dependencies", description=_BETWEEN_DOC, partitions_def=pairs_partitions,
                    code_version=DEPENDENCIES_CODE_VERSION, group_name="dependencies", kinds={"numpy"},
                    check_specs=[certificate_spec("between_dependencies")], automation_condition=FOLLOW_INPUTS,
                    config=_launchpad("between_dependencies_plan", project),
                    ins={"moments": dg.AssetIn(partition_mapping=SOURCE),
                         "target_logits": dg.AssetIn(partition_mapping=TARGET)})
    def between(dataset: dict, moments: dict, target_logits: dict):
        plan, *chunks = between_plan(dataset, moments, target_logits)
        out = between_commit(plan, **fan(plan, chunks))
        return {"result": out.result, "between_dependencies_certified": out.between_dependencies_certified}

    return within, between


dependencies, between_dependencies = dependency_assets()  # one chunk step; the code location uses the config's
