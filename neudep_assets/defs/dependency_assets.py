"""Dependency assets: within-model CovLasso per model, between-model per ordered model pair."""

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from neudep_assets.defs.automation import FOLLOW_INPUTS
from neudep_assets.defs.checks import CERTIFIED, certificate, certificate_spec
from neudep_assets.defs.partitions import SOURCE, TARGET, models_partitions, pairs_partitions, parse_pair
from neudep_assets.defs.report import md_image, md_images, md_table
from neudep_assets.defs.resources import Neudep
from neudep_assets.lib.report import plots
from neudep_assets.lib.analysis import analyse, best_targets, summarize
from neudep_assets.lib.report import fig3_png
from neudep_assets.lib.config import DependencyConfig, stable_hash, stable_json
from neudep_assets.lib.data import PreparedDataset
from neudep_assets.lib.report import star_pictures
from neudep_assets.lib.analysis.moments import LogitsError, check_aligned, second_moment
from neudep_assets.lib.analysis.offsets import apply_gauge, gauge_moment, offset_direction_share_of, other_gauge
from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.store import TABLES, ResultStore, load_arrays

DEPENDENCIES_SCIENCE = ("neudep_assets.lib.analysis.dependencies", "neudep_assets.lib.analysis.moments",
                        "neudep_assets.lib.analysis.offsets")
DEPENDENCIES_CODE_VERSION = code_version(*DEPENDENCIES_SCIENCE)
SOLVER = "neudep.covlasso homotopy"


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


def _identity(eff: DependencyConfig) -> dict:
    """What an analysis's result depends on: not how its targets were chunked (the rows are the same)."""
    return {k: v for k, v in asdict(eff).items() if k != "target_chunk"}


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


def _with_offset_share(res, C_source) -> None:
    """Add `offset_dir_share` to per_target; `C_source`: the source logits' moment in the analysis's gauge."""
    res.per_target["offset_dir_share"] = offset_direction_share_of(
        C_source, res.path.coef, res.path.targets, res.per_target["lambda_index"], res.per_target["target_class"])


def _write_results(store: ResultStore, run_key: str, res, run_rows: list[dict], run_id: str, *,
                   eff: DependencyConfig, class_names,
                   extra: Mapping[str, pd.DataFrame] | None = None,
                   code_version: str = DEPENDENCIES_CODE_VERSION) -> dg.AssetCheckResult:
    """Certify one analysis, then commit all its tables at once (`extra`: further tables of the
    analysis, by table name; `code_version`: of the asset writing it). Returns the certificate; an
    uncertified analysis is not written."""
    check = certificate(res.per_target, eff.tol, eff.lambdas, class_names)
    if check.passed:
        tables = {"dependencies": res.edges, "dependency_metrics": res.per_target, "class_diagnostics": res.per_class,
                  **getattr(res, "path_tables", {}), **(extra or {})}  # a Θ-head (§3.2) has no path
        keyed = {t for t in tables if t in TABLES and "dependency_run_id" in TABLES[t].names}
        tables = {t: df.assign(dependency_run_id=run_key) if t in keyed else df for t, df in tables.items()}
        store.commit_analysis(run_key, {**tables, "dependency_runs": run_rows}, run_id=run_id,
                              code_version=code_version)
    return check


def _refused(run_key: str, check: dg.AssetCheckResult) -> dg.Failure:
    m = {k: v.value for k, v in check.metadata.items()}
    return dg.Failure(description=f"analysis {run_key}: {m['uncertified_solutions']} of {m['solutions']} CovLasso "
                      f"solutions exceed tol = {m['tolerance']:g} (relative KKT), so nothing was written; worst: "
                      + "; ".join(m["worst_targets"].replace("- ", "").splitlines()))


def _stored_certificate(store: ResultStore, run_key: str, class_names) -> dg.AssetCheckResult:
    runs = store.read("dependency_runs", run_key).sort_values("lambda_index")
    return certificate(store.read("dependency_metrics", run_key), float(runs["tol"].max()),
                       runs["lambda_value"].tolist(), class_names)


def _run_rows(run_key: str, kind: str, eff: DependencyConfig, res, *, model: str, sha: str, source_model: str,
              source_sha: str, dataset_id: str, moments_id: str) -> list[dict]:
    max_kkt = res.path.kkt.max(axis=1)
    return [{"dependency_run_id": run_key, "kind": kind, "lambda_index": li,
             "lambda_rel": lam if eff.lambda_mode == "relative" else None, "lambda_value": lam,
             "lambda_mode": eff.lambda_mode, "model": model, "checkpoint_sha256": sha, "source_model": source_model,
             "source_checkpoint_sha256": source_sha, "dataset_id": dataset_id, "fit_split": eff.fit_split,
             "eval_split": eff.eval_split, "moments_id": moments_id, "solver": SOLVER, "tol": eff.tol,
             "max_kkt": float(max_kkt[li]), "n_targets": int(res.path.kkt.shape[1]), "config_json": stable_json(eff),
             "logit_gauge": eff.logit_gauge}
            for li, lam in enumerate(eff.lambdas)]


def _reference_lambda(eff: DependencyConfig) -> int:
    """Index of the λ the UI pictures use: the one closest to 0.1 (λ_rel in the paper's range)."""
    return int(np.argmin(np.abs(np.asarray(eff.lambdas) - 0.1)))


def _save_fig3(store: ResultStore, run_key: str, res, eff: DependencyConfig, ds: PreparedDataset, C, title: str,
               **between) -> None:
    li = _reference_lambda(eff)
    best = best_targets(res.per_target, li, 1)
    if best:
        store.save_png(run_key, "fig3", fig3_png(C, res, best[0], li, title=f"{title}: {ds.class_names[best[0]]}, "
                                                 f"λ={eff.lambdas[li]:g}", **between))


def _publish(store: ResultStore, run_key: str, eff: DependencyConfig, ds: PreparedDataset, title: str) -> dict:
    """UI metadata read back from the store: per-λ summary table, plots, star pictures."""
    per_target = store.read("dependency_metrics", run_key)
    per_target["lambda_rel"] = per_target["lambda_abs"] / per_target["lambda_max"]
    edges = store.read("dependencies", run_key)
    diag = store.read("class_diagnostics", run_key)
    summary = summarize(per_target, eff.lambdas)
    li = _reference_lambda(eff)
    stars = star_pictures(edges, per_target, ds, li, best_targets(per_target, li, eff.star_plots), title,
                          eff.lambdas[li])
    return {
        "lambda_summary": md_table(summary),
        "share_with_dependency_at_0.1": float(summary["share_with_dependency"].iloc[li]),
        "max_kkt": float(per_target["kkt"].max()),
        "rank": int(diag["rank"].iloc[0]),
        "eq5_violations": int(diag["eq5_violations"].sum()),
        "thm3_violations": int(per_target["thm3_violations"].sum()),
        "conj1_violation_rate": float(per_target["conj1_violations"].sum() / max(per_target["conj1_screened"].sum(), 1)),
        "sparsity_plot": md_image(plots.sparsity_plot(per_target), "sparsity"),
        "screening_plot": md_image(plots.screening_plot(per_target), "screening (Theorem 3, Conjecture 1)"),
        "strongest_dependencies": md_images(stars),
        **({"fig3": md_image(fig3.read_bytes(), "Fig. 3")} if (fig3 := store.artifacts_dir / "plots" / run_key /
                                                               "fig3.png").is_file() else {}),
        "dependency_run_id": run_key,
    }


def _within(context, store: ResultStore, eff: DependencyConfig, ds: PreparedDataset, logits: dict, moments: dict,
            ev: dict, *, pictures: bool, device: str | None) -> tuple[str, dg.AssetCheckResult]:
    """One within-model analysis in ``eff.logit_gauge`` (the gauge is part of its key): found in the
    store, or solved, certified and committed. Returns its dependency_run_id and its certificate (an
    uncertified analysis is not written)."""
    run_key = "within-" + stable_hash({"moments": moments["moments_id"], "eval": ev["logit_set_id"], "cfg": _identity(eff),
                                       "code": DEPENDENCIES_CODE_VERSION})
    with store.lock(f"analyses/{run_key}"):  # one writer per analysis: a second one waits, then finds it
        if store.has_analysis(run_key):
            context.log.info(f"dependencies {run_key} ({eff.logit_gauge} gauge) already in the store")
            return run_key, _stored_certificate(store, run_key, ds.class_names)
        C = gauge_moment(load_arrays(moments["path"])["C"], eff.logit_gauge)
        e = load_arrays(ev["path"])
        context.log.info(f"CovLasso ({eff.logit_gauge} gauge): {C.shape[0]} targets × {len(eff.lambdas)} λ")
        t0 = time.perf_counter()
        res = analyse(C, eff.lambdas, eval_source=apply_gauge(e["logits"], eff.logit_gauge), eval_labels=e["labels"],
                      lambda_mode=eff.lambda_mode, tol=eff.tol, device=device, target_chunk=eff.target_chunk,
                      store_path=eff.store_path)
        _with_offset_share(res, C)
        context.log.info(f"solved in {time.perf_counter() - t0:.1f}s; worst relative KKT "
                         f"{res.path.kkt.max():.1e} (tol {eff.tol:g}), rank of C {res.rank}")
        check = _write_results(store, run_key, res, _run_rows(
            run_key, "within", eff, res, model=logits["model"], sha=logits["checkpoint_sha256"],
            source_model=logits["model"], source_sha=logits["checkpoint_sha256"], dataset_id=ds.dataset_id,
            moments_id=moments["moments_id"]), context.run.run_id, eff=eff, class_names=ds.class_names)
        if check.passed and pictures:
            _save_fig3(store, run_key, res, eff, ds, C, logits["model"])
    return run_key, check


def _share_at(store: ResultStore, run_key: str, lambda_index: int) -> float:
    """Share of classes with a dependency in one stored analysis at one λ index."""
    per_target = store.read("dependency_metrics", run_key)
    at = per_target[per_target["lambda_index"] == lambda_index].assign(lambda_index=0)
    return float(summarize(at, [0.0])["share_with_dependency"].iloc[0])


@dg.asset(partitions_def=models_partitions, code_version=DEPENDENCIES_CODE_VERSION, group_name="dependencies",
          kinds={"numpy"}, check_specs=[certificate_spec("dependencies")], automation_condition=FOLLOW_INPUTS)
def dependencies(context: dg.AssetExecutionContext, config: DependenciesConfig, neudep: Neudep, dataset: dict,
                 logits: dict, moments: dict):
    """Within-model dependencies: CovLasso for every class over the λ path (fit on the fit split),
    the paper's Table-1 metrics on the eval split, redundancy, Eq. 5 and screening diagnostics, in the
    configured logit gauge (raw, the paper's; or centered), plus the other gauge at λ_rel ≈ 0.1 as a
    cross-check: a share that vanishes once each sample's mean logit is removed was the offset.
    Each analysis (the cross-check too) commits all its tables at once, and only when certified (KKT ≤ tol)."""
    project, store = neudep.project(), neudep.store()
    eff = _effective(project.dependencies, config)
    device = _solver_device(neudep)
    ds = PreparedDataset.from_json(dataset)
    ev = logits["splits"][eff.eval_split]
    run_key, check = _within(context, store, eff, ds, logits, moments, ev, pictures=True, device=device)
    if not check.passed:
        yield check
        raise _refused(run_key, check)
    shares, other_key = {eff.logit_gauge: None}, None
    if (other := _crosscheck(eff)) is not None:
        other_key, other_check = _within(context, store, other, ds, logits, moments, ev, pictures=False, device=device)
        if not other_check.passed:
            yield other_check.with_metadata({**other_check.metadata, "crosscheck_run_id": other_key})
            raise _refused(other_key, other_check)
        shares[other.logit_gauge] = _share_at(store, other_key, 0)
        check = check.with_metadata({**check.metadata, "crosscheck_run_id": other_key,
                                     "crosscheck_max_relative_kkt": other_check.metadata["max_relative_kkt"]})
    meta = _publish(store, run_key, eff, ds, logits["model"])
    shares[eff.logit_gauge] = meta["share_with_dependency_at_0.1"]
    meta.update({f"share_with_dependency_{g}_gauge": v for g, v in shares.items()})
    meta["logit_gauge"] = eff.logit_gauge
    yield dg.Output({"dependency_run_id": run_key, "kind": "within", "model": logits["model"],
                     "logit_gauge": eff.logit_gauge, "crosscheck_run_id": other_key},
                    data_version=dg.DataVersion(run_key), metadata=meta)
    yield check


@dg.asset(partitions_def=pairs_partitions, code_version=DEPENDENCIES_CODE_VERSION, group_name="dependencies",
          kinds={"numpy"}, check_specs=[certificate_spec("between_dependencies")], automation_condition=FOLLOW_INPUTS,
          ins={"moments": dg.AssetIn(partition_mapping=SOURCE),
               "target_logits": dg.AssetIn(partition_mapping=TARGET)})
def between_dependencies(context: dg.AssetExecutionContext, config: DependenciesConfig, neudep: Neudep,
                         dataset: dict, moments: dict, target_logits: dict):
    """Between-model dependencies (paper Eq. 4) of the pair source|target: each logit g_i of the target
    model regressed on the source model's logits except class i, from logits of the same samples;
    Table-1 metrics with g's logit i replaced. Reads only its two models (the source's moments, which
    carry its logits, and the target's `target_logits`). Both models' logits are taken in the configured
    gauge (centered: each minus its own per-sample mean). Committed at once, and only when certified
    (KKT ≤ tol). source = target is the within-model analysis (`dependencies`): nothing is computed for it."""
    project, store = neudep.project(), neudep.store()
    eff = _effective(project.dependencies, config)
    device = _solver_device(neudep)
    src, tgt = parse_pair(context.partition_key)
    if src == tgt:
        yield dg.Output({"dependency_run_id": None, "kind": "within", "model": tgt, "source_model": src},
                        data_version=dg.DataVersion(f"same-model-{src}"),
                        metadata={"note": f"source = target: see dependencies[{src}]"})
        yield dg.AssetCheckResult(check_name=CERTIFIED, passed=True,
                                  metadata={"solutions": 0, "note": f"certified as dependencies[{src}]"})
        return
    ds = PreparedDataset.from_json(dataset)
    f, g = moments["logits"], target_logits
    for side in (f, g):
        if side["dataset_id"] != ds.dataset_id:
            raise LogitsError(f"model pair {src}->{tgt}: logits of {side['model']} are of dataset "
                              f"{side['dataset_id']}, not {ds.dataset_id}; rematerialize logits[{side['model']}]")
    fit_f, fit_g = f["splits"][eff.fit_split], g["splits"][eff.fit_split]
    ev_f, ev_g = f["splits"][eff.eval_split], g["splits"][eff.eval_split]
    run_key = "between-" + stable_hash({"fit": [fit_f["logit_set_id"], fit_g["logit_set_id"]],
                                        "eval": [ev_f["logit_set_id"], ev_g["logit_set_id"]], "cfg": _identity(eff),
                                        "code": DEPENDENCIES_CODE_VERSION})
    with store.lock(f"analyses/{run_key}"):  # one writer per analysis: a second one waits, then finds it
        if store.has_analysis(run_key):
            context.log.info(f"between dependencies {run_key} already in the store")
            check = _stored_certificate(store, run_key, ds.class_names)
        else:
            arrays = {k: load_arrays(v["path"]) for k, v in
                      {"fit_f": fit_f, "fit_g": fit_g, "ev_f": ev_f, "ev_g": ev_g}.items()}
            for split in ("fit", "ev"):
                a, b = arrays[f"{split}_f"], arrays[f"{split}_g"]
                if a["logits"].shape[1] != b["logits"].shape[1]:
                    raise LogitsError(f"model pair {src}->{tgt}: {src} has {a['logits'].shape[1]} classes, "
                                      f"{tgt} has {b['logits'].shape[1]}")
                check_aligned(a["sample_ids"], b["sample_ids"], src, tgt)
            gauge = eff.logit_gauge  # both models' logits in the same gauge
            F, G = (apply_gauge(arrays[k]["logits"], gauge) for k in ("fit_f", "fit_g"))
            C, cross = second_moment(F), second_moment(F, G)
            context.log.info(f"between CovLasso {src}->{tgt} ({gauge} gauge): {C.shape[0]} targets × "
                             f"{len(eff.lambdas)} λ")
            t0 = time.perf_counter()
            tsm = (G.astype(np.float64) ** 2).mean(0)
            res = analyse(C, eff.lambdas, cross=cross, target_second_moment=tsm,
                          eval_source=apply_gauge(arrays["ev_f"]["logits"], gauge),
                          eval_target=apply_gauge(arrays["ev_g"]["logits"], gauge),
                          eval_labels=arrays["ev_g"]["labels"], lambda_mode=eff.lambda_mode, tol=eff.tol,
                          device=device, target_chunk=eff.target_chunk, store_path=eff.store_path)
            _with_offset_share(res, C)
            context.log.info(f"solved in {time.perf_counter() - t0:.1f}s; worst relative KKT "
                             f"{res.path.kkt.max():.1e} (tol {eff.tol:g})")
            check = _write_results(store, run_key, res, _run_rows(
                run_key, "between", eff, res, model=tgt, sha=g["checkpoint_sha256"], source_model=src,
                source_sha=f["checkpoint_sha256"], dataset_id=ds.dataset_id,
                moments_id=f"{fit_f['logit_set_id']}-x-{fit_g['logit_set_id']}"), context.run.run_id, eff=eff,
                class_names=ds.class_names)
            if not check.passed:
                yield check
                raise _refused(run_key, check)
            _save_fig3(store, run_key, res, eff, ds, C, f"{src}→{tgt}", cross=cross, target_second_moment=tsm)
    meta = _publish(store, run_key, eff, ds, f"{src}→{tgt}")
    meta["logit_gauge"] = eff.logit_gauge
    yield dg.Output({"dependency_run_id": run_key, "kind": "between", "model": tgt, "source_model": src,
                     "logit_gauge": eff.logit_gauge},
                    data_version=dg.DataVersion(run_key), metadata=meta)
    yield check
