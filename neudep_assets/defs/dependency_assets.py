"""Dependency assets: within-model CovLasso per model, between-model per ordered model pair."""

import time
from typing import Optional

import dagster as dg
import numpy as np

from neudep_assets.defs.automation import FOLLOW_INPUTS
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
from neudep_assets.lib.store import ResultStore, load_arrays

DEPENDENCIES_CODE_VERSION = "1"
SOLVER = "neudep.covlasso homotopy"


class DependenciesConfig(dg.Config):
    """Launchpad overrides of `dependencies:` in neudep.yaml (unset = the project value)."""

    lambdas: Optional[list[float]] = None
    lambda_mode: Optional[str] = None
    tol: Optional[float] = None


def _effective(project_dep: DependencyConfig, override: DependenciesConfig) -> DependencyConfig:
    def pick(name):
        value = getattr(override, name)
        return getattr(project_dep, name) if value is None else value

    eff = DependencyConfig(
        lambdas=tuple(pick("lambdas")), lambda_mode=pick("lambda_mode"), fit_split=project_dep.fit_split,
        eval_split=project_dep.eval_split, tol=pick("tol"), star_plots=project_dep.star_plots)
    eff.validate("run config")
    return eff


def _write_results(store: ResultStore, run_key: str, res, run_rows: list[dict], run_id: str) -> None:
    """Write one analysis; the dependency_runs file goes last, so its presence means 'complete'."""
    cv = DEPENDENCIES_CODE_VERSION
    store.write("dependencies", run_key, res.edges.assign(dependency_run_id=run_key), run_id=run_id, code_version=cv)
    store.write("dependency_metrics", run_key, res.per_target.assign(dependency_run_id=run_key),
                run_id=run_id, code_version=cv)
    store.write("class_diagnostics", run_key, res.per_class.assign(dependency_run_id=run_key),
                run_id=run_id, code_version=cv)
    store.write("dependency_runs", run_key, run_rows, run_id=run_id, code_version=cv)


def _run_rows(run_key: str, kind: str, eff: DependencyConfig, res, *, model: str, sha: str, source_model: str,
              source_sha: str, dataset_id: str, moments_id: str) -> list[dict]:
    max_kkt = res.path.kkt.max(axis=1)
    return [{"dependency_run_id": run_key, "kind": kind, "lambda_index": li,
             "lambda_rel": lam if eff.lambda_mode == "relative" else None, "lambda_value": lam,
             "lambda_mode": eff.lambda_mode, "model": model, "checkpoint_sha256": sha, "source_model": source_model,
             "source_checkpoint_sha256": source_sha, "dataset_id": dataset_id, "fit_split": eff.fit_split,
             "eval_split": eff.eval_split, "moments_id": moments_id, "solver": SOLVER, "tol": eff.tol,
             "max_kkt": float(max_kkt[li]), "n_targets": int(res.path.kkt.shape[1]), "config_json": stable_json(eff)}
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


@dg.asset(partitions_def=models_partitions, code_version=DEPENDENCIES_CODE_VERSION, group_name="dependencies",
          kinds={"numpy"}, automation_condition=FOLLOW_INPUTS)
def dependencies(context: dg.AssetExecutionContext, config: DependenciesConfig, neudep: Neudep, dataset: dict,
                 logits: dict, moments: dict) -> dg.Output[dict]:
    """Within-model dependencies: CovLasso for every class over the λ path (fit on the fit split),
    the paper's Table-1 metrics on the eval split, redundancy, Eq. 5 and screening diagnostics."""
    project, store = neudep.project(), neudep.store()
    eff = _effective(project.dependencies, config)
    ds = PreparedDataset.from_json(dataset)
    ev = logits["splits"][eff.eval_split]
    run_key = "within-" + stable_hash({"moments": moments["moments_id"], "eval": ev["logit_set_id"], "cfg": eff,
                                       "code": DEPENDENCIES_CODE_VERSION})
    if store.has("dependency_runs", run_key):
        context.log.info(f"dependencies {run_key} already in the store")
    else:
        C = load_arrays(moments["path"])["C"]
        e = load_arrays(ev["path"])
        context.log.info(f"CovLasso: {C.shape[0]} targets × {len(eff.lambdas)} λ")
        t0 = time.perf_counter()
        res = analyse(C, eff.lambdas, eval_source=e["logits"], eval_labels=e["labels"], lambda_mode=eff.lambda_mode,
                      tol=eff.tol)
        context.log.info(f"solved and certified in {time.perf_counter() - t0:.1f}s; worst relative KKT "
                         f"{res.path.kkt.max():.1e}, rank of C {res.rank}")
        _save_fig3(store, run_key, res, eff, ds, C, logits["model"])
        _write_results(store, run_key, res, _run_rows(
            run_key, "within", eff, res, model=logits["model"], sha=logits["checkpoint_sha256"],
            source_model=logits["model"], source_sha=logits["checkpoint_sha256"], dataset_id=ds.dataset_id,
            moments_id=moments["moments_id"]), context.run.run_id)
    meta = _publish(store, run_key, eff, ds, logits["model"])
    return dg.Output({"dependency_run_id": run_key, "kind": "within", "model": logits["model"]},
                     data_version=dg.DataVersion(run_key), metadata=meta)


@dg.asset(partitions_def=pairs_partitions, code_version=DEPENDENCIES_CODE_VERSION, group_name="dependencies",
          kinds={"numpy"}, automation_condition=FOLLOW_INPUTS,
          ins={"moments": dg.AssetIn(partition_mapping=SOURCE),
               "target_logits": dg.AssetIn(partition_mapping=TARGET)})
def between_dependencies(context: dg.AssetExecutionContext, config: DependenciesConfig, neudep: Neudep,
                         dataset: dict, moments: dict, target_logits: dict) -> dg.Output[dict]:
    """Between-model dependencies (paper Eq. 4) of the pair source|target: each logit g_i of the target
    model regressed on the source model's logits except class i, from logits of the same samples;
    Table-1 metrics with g's logit i replaced. Reads only its two models (the source's moments, which
    carry its logits, and the target's `target_logits`). source = target is the within-model analysis
    (`dependencies`): nothing is computed for it."""
    project, store = neudep.project(), neudep.store()
    eff = _effective(project.dependencies, config)
    ds = PreparedDataset.from_json(dataset)
    src, tgt = parse_pair(context.partition_key)
    if src == tgt:
        return dg.Output({"dependency_run_id": None, "kind": "within", "model": tgt, "source_model": src},
                         data_version=dg.DataVersion(f"same-model-{src}"),
                         metadata={"note": f"source = target: see dependencies[{src}]"})
    f, g = moments["logits"], target_logits
    for side in (f, g):
        if side["dataset_id"] != ds.dataset_id:
            raise LogitsError(f"model pair {src}->{tgt}: logits of {side['model']} are of dataset "
                              f"{side['dataset_id']}, not {ds.dataset_id}; rematerialize logits[{side['model']}]")
    fit_f, fit_g = f["splits"][eff.fit_split], g["splits"][eff.fit_split]
    ev_f, ev_g = f["splits"][eff.eval_split], g["splits"][eff.eval_split]
    run_key = "between-" + stable_hash({"fit": [fit_f["logit_set_id"], fit_g["logit_set_id"]],
                                        "eval": [ev_f["logit_set_id"], ev_g["logit_set_id"]], "cfg": eff,
                                        "code": DEPENDENCIES_CODE_VERSION})
    if store.has("dependency_runs", run_key):
        context.log.info(f"between dependencies {run_key} already in the store")
    else:
        arrays = {k: load_arrays(v["path"]) for k, v in
                  {"fit_f": fit_f, "fit_g": fit_g, "ev_f": ev_f, "ev_g": ev_g}.items()}
        for split in ("fit", "ev"):
            a, b = arrays[f"{split}_f"], arrays[f"{split}_g"]
            if a["logits"].shape[1] != b["logits"].shape[1]:
                raise LogitsError(f"model pair {src}->{tgt}: {src} has {a['logits'].shape[1]} classes, "
                                  f"{tgt} has {b['logits'].shape[1]}")
            check_aligned(a["sample_ids"], b["sample_ids"], src, tgt)
        F, G = arrays["fit_f"]["logits"], arrays["fit_g"]["logits"]
        C, cross = second_moment(F), second_moment(F, G)
        context.log.info(f"between CovLasso {src}->{tgt}: {C.shape[0]} targets × {len(eff.lambdas)} λ")
        t0 = time.perf_counter()
        tsm = (G.astype(np.float64) ** 2).mean(0)
        res = analyse(C, eff.lambdas, cross=cross, target_second_moment=tsm,
                      eval_source=arrays["ev_f"]["logits"], eval_target=arrays["ev_g"]["logits"],
                      eval_labels=arrays["ev_g"]["labels"], lambda_mode=eff.lambda_mode, tol=eff.tol)
        context.log.info(f"solved and certified in {time.perf_counter() - t0:.1f}s; worst relative KKT "
                         f"{res.path.kkt.max():.1e}")
        _save_fig3(store, run_key, res, eff, ds, C, f"{src}→{tgt}", cross=cross, target_second_moment=tsm)
        _write_results(store, run_key, res, _run_rows(
            run_key, "between", eff, res, model=tgt, sha=g["checkpoint_sha256"], source_model=src,
            source_sha=f["checkpoint_sha256"], dataset_id=ds.dataset_id,
            moments_id=f"{fit_f['logit_set_id']}-x-{fit_g['logit_set_id']}"), context.run.run_id)
    meta = _publish(store, run_key, eff, ds, f"{src}→{tgt}")
    return dg.Output({"dependency_run_id": run_key, "kind": "between", "model": tgt, "source_model": src},
                     data_version=dg.DataVersion(run_key), metadata=meta)
