"""Uses of dependencies (paper §3.2, §3.3): incremental-category heads and regularized checkpoints.

`regularized_checkpoints[parent]` writes fine-tuned children (control and regularized per seed) and adds
each as a `models` partition of its own, so `checkpoint` → `logits` → `moments` → `dependencies` run on
it like on any model; `regularization_report[parent]` then reads the children's results back from the
store (Table 3). The uses are partitioned by the models the config applies them to (`incremental_models`,
`regularization_models`, defs/partitions.py), not by every model: a child is no partition of theirs."""

import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pandas as pd

from neudep_assets.defs.dependency_assets import _write_results
from neudep_assets.defs.partitions import (SAME_MODEL, incremental_partitions, models_partitions,
                                           regularization_partitions)
from neudep_assets.defs.report import md_table, mean_std, pictures
from neudep_assets.defs.resources import Neudep
from neudep_assets.lib.analysis.incremental import choose_split, compare_heads, theta_edges, theta_targets
from neudep_assets.lib.analysis.regularization import check_ood_disjoint, child_readings, choose_pairs, resolve_pairs
from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.config import LOGIT_GAUGES, ConfigError, DependencyConfig, stable_hash, stable_json
from neudep_assets.lib.data import PreparedDataset
from neudep_assets.lib.models.checkpoints import CheckpointInfo, obtain_checkpoint
from neudep_assets.lib.models.finetune import (describe, finetune_checkpoint, logits_and_features,
                                               train_base_checkpoint, training_epoch_seconds, truncated_checkpoint)
from neudep_assets.lib.report.plots import grouped_bars, regularization_plot
from neudep_assets.lib.specs import TRAIN_DEFAULTS
from neudep_assets.lib.store import ResultStore, load_arrays

# the lib modules each asset's results depend on; their source (transitively) is the code version
INCREMENTAL_SCIENCE = ("neudep_assets.lib.analysis.incremental", "neudep_assets.lib.models.finetune")
REGULARIZED_SCIENCE = ("neudep_assets.lib.analysis.regularization", "neudep_assets.lib.models.finetune")
REPORT_SCIENCE = ("neudep_assets.lib.analysis.regularization",)
INCREMENTAL_CODE_VERSION = code_version(*INCREMENTAL_SCIENCE)
REGULARIZED_CODE_VERSION = code_version(*REGULARIZED_SCIENCE)
REPORT_CODE_VERSION = code_version(*REPORT_SCIENCE)
READINGS = ("overall", "base", "new", "pos_neg")
QUERIES = Path(__file__).resolve().parents[2] / "sql" / "queries"
INCREMENTAL_SQL, TABLE3_SQL = QUERIES / "incremental_table.sql", QUERIES / "regularization_table3.sql"


class IncrementalHeadsConfig(dg.Config):
    """Launchpad overrides of `incremental:` in neudep.yaml (0 / -1 = keep the project value)."""

    seeds: int = 0
    l1: float = -1.0


class RegularizedCheckpointsConfig(dg.Config):
    """Launchpad overrides of `regularization:` in neudep.yaml (-1 = keep the project value)."""

    alpha: float = -1.0
    max_steps: int = -1


def _checkpoint_row(info: CheckpointInfo, ds: PreparedDataset, parent: str | None, config: dict) -> dict:
    return {"checkpoint_sha256": info.sha256, "model": info.model, "arch": info.arch, "origin": info.origin,
            "source": info.source, "parent_sha256": parent, "path": info.path, "dataset_id": ds.dataset_id,
            "num_classes": info.num_classes, "num_features": info.num_features, "n_params": info.n_params,
            "train_val_acc": info.train_val_acc, "train_seconds": info.train_seconds, "config_json": stable_json(config)}


def _skip(what: str, name: str) -> dg.Output[dict]:
    """A partition an earlier config listed (partitions are never removed) that the config no longer does."""
    return dg.Output({"skipped": True, "model": name}, data_version=dg.DataVersion(f"skipped-{what}"),
                     metadata={"skipped": f"{name} is not listed under {what}.models in the config"})


@dg.asset(partitions_def=incremental_partitions, code_version=INCREMENTAL_CODE_VERSION, group_name="uses",
          pool="gpu", kinds={"pytorch"}, ins={"checkpoint": dg.AssetIn(partition_mapping=SAME_MODEL),
                                             "logits": dg.AssetIn(partition_mapping=SAME_MODEL)})
def incremental_heads(context: dg.AssetExecutionContext, config: IncrementalHeadsConfig, neudep: Neudep,
                      dataset: dict, checkpoint: dict, logits: dict) -> dg.Output[dict]:
    """New categories from old logits (paper §3.2, Tables 2 and 4). Per base/new split: a base checkpoint
    of the base classes (retrained, or the model with the new classes' head rows removed: `base_model`
    says which); the Θ-head (new logits = Θᵀ f_base(x), only Θ trained), a linear head on the frozen
    base features, and the model trained on all classes with the same recipe; overall, base-group,
    new-group and pos & neg accuracy, mean ± std over seeds. Time per epoch as the paper compares it
    (`epoch_s`, `time_ratio`: the base's forward pass over the epoch's images plus the head's updates,
    against a training epoch of the all-class model) beside the head's updates over cached logits
    (`epoch_cached_s`, `time_ratio_cached`). Each Θ is stored as a dependency graph (kind `theta_head`)."""
    project, store = neudep.project(), neudep.store()
    inc = project.incremental
    name = context.partition_key
    if name not in inc.models:
        return _skip("incremental", name)
    seeds = config.seeds or inc.seeds
    l1 = inc.l1 if config.l1 < 0 else config.l1
    dataclasses.replace(inc, seeds=seeds, l1=l1).validate("run config")  # NaN, inf, negative seeds: refused
    ds, info, spec = PreparedDataset.from_json(dataset), CheckpointInfo(**checkpoint), project.model(name)
    train_labels = load_arrays(logits["splits"]["train"]["path"])["labels"]
    splits = [choose_split(ds.n_classes, s, inc.split_seed, train_labels) for s in inc.splits]  # refuse before training
    base_mode = inc.base if inc.base != "auto" else ("retrain" if spec.trains and ds.kind == "glyphs" else "truncate")
    eff = {**json.loads(stable_json(inc)), "seeds": seeds, "l1": l1, "base": base_mode}
    result_id = "inc-" + stable_hash({"checkpoint": info.sha256, "dataset": ds.dataset_id, "cfg": eff,
                                      "code": INCREMENTAL_CODE_VERSION})
    if store.has("incremental_results", result_id):
        context.log.info(f"incremental heads {result_id} already in the store")
    else:
        rows = _run_incremental(context, store, ds, info, spec, splits, base_mode, eff, seeds, l1, result_id,
                                logits["splits"]["val"]["path"], neudep.pick_device(), project.dependencies.tol)
        store.write("incremental_results", result_id, rows, run_id=context.run.run_id,
                    code_version=INCREMENTAL_CODE_VERSION)
    res = store.read("incremental_results", result_id)
    table = store.query(INCREMENTAL_SQL.read_text())
    table = table[table["model"] == name]
    long = pd.concat([table[["setting", "method"]].assign(reading=r, mean=table[r], std=table[f"{r}_std"])
                      for r in READINGS])
    long["group"] = long["setting"] + " " + long["reading"]
    png = grouped_bars(long, group="group", series="method", value="mean", err="std", ylabel="accuracy (val, %)",
                       title=f"{name}: new categories from old logits (mean ± std over {seeds} seeds)")
    context.add_asset_metadata({  # on the materialization only (see defs/report.py)
        **incremental_tables(table), **pictures(store, result_id, {"plot": ("Table 2/4", png)}), "result_id": result_id,
        "theta_runs": ", ".join(sorted(set(res["dependency_run_id"].dropna())))})
    return dg.Output({"result_id": result_id, "model": name}, data_version=dg.DataVersion(result_id))


def incremental_tables(table: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """Tables 2 and 4 as the UI shows them: the accuracies in % as 'mean ± std' over the seeds (`table_2_4`),
    and the epoch times in a second table (`epoch_times`); every column is in the stored rows
    (sql/queries/incremental_table.sql)."""
    method = table["method"].str.replace("_", "\u00a0")  # no-break spaces: a cell does not wrap
    acc = pd.concat([table[["setting"]].assign(method=method, classes=table["classes"].str.replace(" ", "\u00a0"),
                                               seeds=table["seeds"]),
                     mean_std(table, {"overall": "overall %", "base": "base group %", "new": "new group %",
                                      "pos_neg": "pos & neg %"})], axis=1)
    def fmt(col, f):
        return table[col].map(lambda v: "–" if pd.isna(v) else f.format(v))

    times = table[["setting"]].assign(method=method, base_model=table["base_model"],
                                      epoch_s=fmt("epoch_s", "{:.3g} s"), time_ratio=fmt("time_ratio", "{:.2%}"),
                                      epoch_cached_s=fmt("epoch_cached_s", "{:.3g} s"),
                                      time_ratio_cached=fmt("time_ratio_cached", "{:.2%}"))
    times.columns = ["setting", "method", "base model", "epoch", "of a training epoch", "epoch (cached logits)",
                     "of a training epoch (cached)"]
    return {"table_2_4": md_table(acc), "epoch_times": md_table(times)}


def table3_md(t3: pd.DataFrame) -> dg.MetadataValue:
    """Table 3 as the UI shows it: accuracy in %, coefficients and AUPR as 'mean ± std' over the seeds."""
    pct = t3.assign(acc=100 * t3["acc"], acc_std=100 * t3["acc_std"])
    out = pd.concat([t3[["pair", "role"]].assign(alpha=t3["alpha"].map("{:g}".format), seeds=t3["seeds"]),
                     mean_std(pct, {"acc": "val accuracy %"}),
                     mean_std(t3, {"coef_ab": "coef a ← b", "coef_ba": "coef b ← a"}, digits=3),
                     t3[["parent_coef"]].rename(columns={"parent_coef": "parent coef"}),
                     mean_std(t3, {"ood_aupr": "OOD AUPR"}, digits=3)], axis=1)
    return md_table(out, floatfmt=".3f")


def _run_incremental(context, store: ResultStore, ds, info, spec, splits, base_mode, eff, seeds, l1, result_id,
                     own_val_path: str, device: str, tol: float):
    import dataclasses

    log = context.log.info
    run_id = context.run.run_id
    # baseline (a): the model trained on all classes with the base checkpoint's recipe (the model itself when
    # the base is its truncation or is trained with the model's own recipe)
    epochs = int(spec.train.get("epochs", 10)) if spec.trains else 0
    if base_mode == "truncate" or not eff["base_epochs"] or eff["base_epochs"] == epochs:
        full = info
    else:
        full_spec = dataclasses.replace(spec, name=f"{spec.name}.all", train={**spec.train, "epochs": eff["base_epochs"]})
        full = obtain_checkpoint(full_spec, ds, store.root, device=device, log=log)
        if not store.has("checkpoints", full.sha256):
            store.write("checkpoints", full.sha256, [_checkpoint_row(full, ds, None, full_spec.to_dict())],
                        run_id=run_id, code_version=INCREMENTAL_CODE_VERSION)
    if full is info:  # the model's own val logits are already stored
        stored = load_arrays(own_val_path)
        full_val, val_labels = stored["logits"], stored["labels"]
    else:
        full_val, _, val_labels = logits_and_features(Path(full.path), ds, "val", num_classes=ds.n_classes,
                                                      device=device, batch_size=spec.logits_batch_size)
    recipe = {**TRAIN_DEFAULTS, **spec.train} if spec.trains else {"batch_size": eff["batch_size"], "lr": 1e-3}
    timing = training_epoch_seconds(Path(full.path), ds, num_classes=ds.n_classes, batch_size=recipe["batch_size"],
                                    lr=recipe["lr"], weight_decay=recipe.get("weight_decay", 0.0),
                                    mean_logit_penalty=recipe.get("mean_logit_penalty", 0.0), device=device)
    log(f"all-class baseline: one training epoch ≈ {timing['epoch_seconds']:.1f}s ({timing['steps_timed']} steps of "
        f"{timing['batch_size']} timed at {timing['step_seconds']:.3f}s, {timing['steps_per_epoch']} per epoch)")
    rows = []
    for split in splits:
        if base_mode == "retrain":
            base, meta = train_base_checkpoint(spec, ds, split.base, store.root, epochs=eff["base_epochs"],
                                               device=device, log=log)
        else:
            base, meta = truncated_checkpoint(info, split.base, store.root)
        if not store.has("checkpoints", base.sha256):
            store.write("checkpoints", base.sha256, [_checkpoint_row(base, ds, info.sha256, {
                "split": split.to_json(), "base": base_mode, "train": meta.get("train")})], run_id=run_id,
                code_version=INCREMENTAL_CODE_VERSION)
        kw = {"num_classes": len(split.base), "device": device, "batch_size": spec.logits_batch_size}
        t0 = time.perf_counter()
        Ftr, Htr, ytr = logits_and_features(Path(base.path), ds, "train", **kw)
        forward_s = time.perf_counter() - t0  # the frozen base over one epoch's images (the train split)
        Fv, Hv, yv = logits_and_features(Path(base.path), ds, "val", **kw)
        log(f"{split.setting}: base ({base.origin}) forward pass over the {len(ytr)} train images in {forward_s:.1f}s")
        common = {"result_id": result_id, "model": spec.name, "checkpoint_sha256": info.sha256,
                  "dataset_id": ds.dataset_id, "setting": split.setting, "split_seed": split.seed,
                  "base_origin": base.origin, "base_checkpoint_sha256": base.sha256,
                  "baseline_checkpoint_sha256": full.sha256, "n_base": len(split.base), "n_new": len(split.new),
                  "config_json": stable_json({**eff, "split": split.to_json(), "timing": {
                      "base_forward_seconds": forward_s, **{f"baseline_{k}": v for k, v in timing.items()}}})}
        recs = compare_heads(Ftr, Htr, ytr, Fv, Hv, yv, full_val, split, seeds=seeds, l1=l1, epochs=eff["epochs"],
                             lr=eff["lr"], batch_size=eff["batch_size"], forward_seconds=forward_s,
                             baseline_epoch_seconds=timing["epoch_seconds"])
        overall = {r["seed"]: r["overall_acc"] for r in recs if r["method"] == "all_classes"}
        for r in recs:
            theta, full_logits = r.pop("theta", None), r.pop("full_logits", None)
            run_key = None if theta is None else _store_theta(
                store, run_id, ds, spec.name, base, split, r["seed"], l1, theta, full_logits, yv, overall[r["seed"]], eff,
                tol)
            rows.append({**common, **r, "l1": None if r["method"] == "all_classes" else l1,
                         "dependency_run_id": run_key})
    return rows


def _store_theta(store, run_id, ds, model, base, split, seed, l1, theta, full_logits, labels, orig_acc, eff,
                 tol) -> str:
    """Θ as a dependency analysis, committed like any (`_write_results`): edges base class → new class,
    per-target recall, lineage row. Θ is trained by Adam, not solved by the CovLasso, so it has no KKT
    certificate: its per-target `kkt` is 0 by convention (`theta_targets`) and its run row's `tol` and
    `max_kkt` are NULL, which the certificate gate passes."""
    run_key = "theta-" + stable_hash({"base": base.sha256, "split": split.to_json(), "seed": seed, "l1": l1,
                                      "cfg": eff, "code": INCREMENTAL_CODE_VERSION})
    if store.has_analysis(run_key):
        return run_key
    edges = theta_edges(theta, split)
    per_target = theta_targets(theta, full_logits, labels, split, l1=l1, orig_acc=orig_acc)
    run_rows = [{"dependency_run_id": run_key, "kind": "theta_head", "lambda_index": 0, "lambda_rel": None,
                 "lambda_value": l1, "lambda_mode": "theta_l1", "logit_gauge": "raw", "model": model,
                 "checkpoint_sha256": base.sha256,
                 "source_model": base.model, "source_checkpoint_sha256": base.sha256, "dataset_id": ds.dataset_id,
                 "fit_split": "train", "eval_split": "val", "moments_id": None,
                 "solver": "Θ-head: Adam on cross-entropy over all classes", "tol": None, "max_kkt": None,
                 "n_targets": len(split.new),
                 "config_json": stable_json({"split": split.to_json(), "seed": seed, "l1": l1, "base": base.sha256,
                                             "cfg": eff})}]
    cert = DependencyConfig(lambdas=(float(l1),), lambda_mode="absolute", tol=tol)  # the λ of Θ is its ℓ1 weight
    _write_results(store, run_key, SimpleNamespace(edges=edges, per_target=per_target, per_class=pd.DataFrame(
        {"target_class": pd.Series(dtype="int64")})), run_rows, run_id, eff=cert, class_names=ds.class_names,
        code_version=INCREMENTAL_CODE_VERSION)  # kkt = 0 ≤ tol: always certified, so always committed
    return run_key


# ------------------------------------------------------------------------------------------------ §3.3
def _within_run(store: ResultStore, model: str, sha: str, lam: float, gauge: str) -> tuple[str | None, int, str]:
    """The model's latest within analysis at λ_rel = lam, of logit gauge `gauge` when the store has one,
    else of the other gauge: (run id or None, λ index, the gauge found)."""
    for want in [gauge] + [g for g in LOGIT_GAUGES if g != gauge]:
        runs = store.query(
            "SELECT dependency_run_id, lambda_index FROM dependency_runs WHERE kind = 'within' AND model = $m AND "
            "checkpoint_sha256 = $sha AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9 AND "
            "coalesce(logit_gauge, 'raw') = $gauge ORDER BY written_at DESC LIMIT 1",
            {"m": model, "sha": sha, "lam": lam, "gauge": want})
        if len(runs):
            return str(runs["dependency_run_id"].iloc[0]), int(runs["lambda_index"].iloc[0]), want
    return None, -1, gauge


@dg.asset(partitions_def=regularization_partitions, code_version=REGULARIZED_CODE_VERSION, group_name="uses",
          pool="gpu", kinds={"pytorch"}, ins={"checkpoint": dg.AssetIn(partition_mapping=SAME_MODEL)},
          deps=[dg.AssetDep("dependencies", partition_mapping=SAME_MODEL)])
def regularized_checkpoints(context: dg.AssetExecutionContext, config: RegularizedCheckpointsConfig, neudep: Neudep,
                            dataset: dict, checkpoint: dict) -> dg.Output[dict]:
    """The dependency regularizer (paper §3.3): the pairs to cut (from config, or the strongest within-model
    dependencies at λ between classes a human would not relate, with the reason), and per seed the parent
    fine-tuned with CE + α·Σ|E_batch[f_i f_j]| and the control with α = 0 (same steps, seed, data order).
    Each child is a checkpoint and a `models` partition of its own (not one of this asset's)."""
    import dataclasses

    project, store = neudep.project(), neudep.store()
    reg = project.regularization
    reg = dataclasses.replace(reg, **({"alpha": config.alpha} if not config.alpha < 0 else {}),
                              **({"max_steps": config.max_steps} if config.max_steps >= 0 else {}))
    reg.validate("run config")
    name = context.partition_key
    if name not in reg.models:
        return _skip("regularization", name)
    ds, info = PreparedDataset.from_json(dataset), CheckpointInfo(**checkpoint)
    if ds.kind == "imagefolder" and "ood" in ds.splits:
        ood_root = Path(ds.splits["ood"])
        check_ood_disjoint(sorted(d.name for d in ood_root.iterdir() if d.is_dir()), list(ds.class_labels),
                           f"{project.path}: dataset.splits.ood ({ood_root})")
    # the pairs (refused before any training when a name is wrong)
    run, li, used = _within_run(store, name, info.sha256, reg.lambda_rel, reg.logit_gauge)
    edges = (store.query("SELECT target_class, source_class, coef FROM dependencies WHERE dependency_run_id = $r AND "
                         "lambda_index = $li", {"r": run, "li": li}) if run else
             pd.DataFrame(columns=["target_class", "source_class", "coef"]))
    pairs = _pairs_to_cut(project, ds, name, run, used, edges)
    pair_rows = pd.DataFrame([{"model": name, "parent_sha256": info.sha256, "pair_index": k, **p, "logit_gauge": used,
                               "lambda_rel": reg.lambda_rel, "dependency_run_id": run} for k, p in enumerate(pairs)])
    pairs_key = f"{name}-{info.sha256[:16]}"  # one current choice per parent checkpoint
    if not (store.has("regularization_pairs", pairs_key) and
            store.read("regularization_pairs", pairs_key)[pair_rows.columns].astype(str).equals(pair_rows.astype(str))):
        store.write("regularization_pairs", pairs_key, pair_rows, run_id=context.run.run_id,
                    code_version=REGULARIZED_CODE_VERSION)
    cut = [(p["class_a"], p["class_b"]) for p in pairs]
    children = []
    for child, role, seed in reg.children(name):
        alpha = reg.alpha if role == "reg" else 0.0
        settings = {"parent": info.sha256, "pairs": cut, "alpha": alpha, "gauge": used, "seed": seed,
                    "epochs": reg.epochs, "max_steps": reg.max_steps, "lr": reg.lr, "batch_size": reg.batch_size,
                    "code": REGULARIZED_CODE_VERSION}
        folder = store.root / "checkpoints" / child / stable_hash(settings)
        meta = finetune_checkpoint(info, ds, folder, pairs=cut, alpha=alpha, gauge=used, seed=seed,
                                   epochs=reg.epochs, max_steps=reg.max_steps, lr=reg.lr, batch_size=reg.batch_size,
                                   device=neudep.pick_device(), log=context.log.info)
        origin = "regularized" if role == "reg" else "control"
        child_info = describe(folder, model=child, origin=origin, source=info.sha256, num_classes=ds.n_classes)
        if not store.has("checkpoints", child_info.sha256):
            store.write("checkpoints", child_info.sha256, [_checkpoint_row(child_info, ds, info.sha256, settings)],
                        run_id=context.run.run_id, code_version=REGULARIZED_CODE_VERSION)
        if not (store.has("derived_models", child) and
                store.read("derived_models", child)["config_json"].iloc[0] == stable_json(settings)):
            store.write("derived_models", child, [{
                "model": child, "parent_model": name, "parent_sha256": info.sha256, "role": origin, "alpha": alpha,
                "seed": seed, "pairs_json": json.dumps(cut), "checkpoint_sha256": child_info.sha256,
                "path": str(folder), "config_json": stable_json(settings)}],
                run_id=context.run.run_id, code_version=REGULARIZED_CODE_VERSION)
        children.append({"model": child, "role": origin, "seed": seed, "alpha": alpha, "sha256": child_info.sha256,
                         "pair_term_first": meta.get("penalty_first"),
                         "pair_term_last": meta.get("penalty_last"), "steps": meta.get("steps")})
    known = set(context.instance.get_dynamic_partitions(models_partitions.name))
    new = [c["model"] for c in children if c["model"] not in known]
    if new:
        context.instance.add_dynamic_partitions(models_partitions.name, new)
    version = stable_hash([c["sha256"] for c in children])
    return dg.Output({"model": name, "parent_sha256": info.sha256, "children": children, "pairs": pairs,
                      "logit_gauge": used},
                     data_version=dg.DataVersion(version), metadata={
                         "pairs": md_table(pd.DataFrame(pairs)), "children": md_table(pd.DataFrame(children)),
                         "logit_gauge": used, "lambda_rel": reg.lambda_rel})


def _pairs_to_cut(project, ds: PreparedDataset, name: str, run: str | None, used: str, edges: pd.DataFrame) -> list:
    """The config's pairs (checked against the class names) or the automatic choice, each with its reason."""
    reg = project.regularization
    if reg.pairs:
        idx = resolve_pairs(reg.pairs, list(ds.class_names))
        strength = {(int(r.target_class), int(r.source_class)): float(r.coef) for r in edges.itertuples()}
        pairs = [{"class_a": a, "class_b": b, "name_a": ds.class_names[a], "name_b": ds.class_names[b],
                  "coef": strength.get((a, b), strength.get((b, a), 0.0)), "reason": "named in regularization.pairs"}
                 for a, b in idx]
    else:
        if run is None:
            raise ConfigError(f"{project.path}: regularization.pairs is empty and model {name} has no within analysis "
                              f"at λ_rel = {reg.lambda_rel} (gauge {used}) to choose pairs from; materialize "
                              f"dependencies[{name}] or name the pairs")
        pairs = choose_pairs(edges, list(ds.class_labels), list(ds.class_names), ds.kind, reg.n_pairs)
    if used != reg.logit_gauge:
        for p in pairs:
            p["reason"] += f" (from the {used}-logit analysis: the store has none of gauge {reg.logit_gauge})"
    return pairs


# The children's logits and analyses are read from the store, not declared as Dagster dependencies: the
# children are dynamic partitions made at run time, Dagster 1.13 has no partition mapping from a parent to
# them (StaticPartitionMapping refuses dynamic partitions; custom PartitionMapping subclasses are
# unsupported, the daemon cannot load them), and AllPartitionMapping made every report stale whenever any
# model appeared. The report's result id hashes the children's run ids, so what it read is recorded.
@dg.asset(partitions_def=regularization_partitions, code_version=REPORT_CODE_VERSION, group_name="uses",
          kinds={"duckdb"})
def regularization_report(context: dg.AssetExecutionContext, neudep: Neudep,
                          regularized_checkpoints: dict) -> dg.Output[dict]:
    """Table 3 of the paper for control and regularized children (mean ± std over seeds): val accuracy,
    each cut pair's coefficient at λ before (control) and after (regularized), read back from the
    children's own dependency analyses in the store (run `model_job` on each child first), and OOD AUPR
    (ood split positive, score −max softmax, scikit-learn's average precision)."""
    project, store = neudep.project(), neudep.store()
    reg = project.regularization
    if regularized_checkpoints.get("skipped"):
        return _skip("regularization", context.partition_key)
    rows = []
    for c in regularized_checkpoints["children"]:
        sets = store.query("SELECT split, path FROM logit_sets WHERE checkpoint_sha256 = $s", {"s": c["sha256"]})
        paths = dict(zip(sets["split"], sets["path"]))
        run, _, used = _within_run(store, c["model"], c["sha256"], reg.lambda_rel,
                                   regularized_checkpoints.get("logit_gauge", reg.logit_gauge))
        if "val" not in paths or run is None:
            raise dg.Failure(f"child {c['model']} has no logits or no within analysis at λ_rel = {reg.lambda_rel} yet; "
                             f"materialize model_job for partition {c['model']}")
        val = load_arrays(paths["val"])
        read = child_readings(val["logits"], val["labels"], load_arrays(paths["ood"])["logits"] if "ood" in paths
                              else None)
        rows.append({"parent_model": regularized_checkpoints["model"],
                     "parent_sha256": regularized_checkpoints["parent_sha256"], "model": c["model"],
                     "role": c["role"], "seed": c["seed"], "alpha": c["alpha"], "checkpoint_sha256": c["sha256"],
                     **read, "lambda_rel": reg.lambda_rel, "logit_gauge": used,
                     "dependency_run_id": run})
    result_id = stable_hash([rows, REPORT_CODE_VERSION])
    rows = [{**r, "result_id": result_id} for r in rows]
    key = f"{regularized_checkpoints['model']}-{regularized_checkpoints['parent_sha256'][:16]}"
    if not (store.has("regularization_results", key) and
            (store.read("regularization_results", key)["result_id"] == result_id).all()):
        store.write("regularization_results", key, rows, run_id=context.run.run_id, code_version=REPORT_CODE_VERSION)
    t3 = store.query(TABLE3_SQL.read_text(), {"parent": regularized_checkpoints["model"]})
    png = regularization_plot(t3, title=f"{regularized_checkpoints['model']}: dependency regularizer (Table 3, "
                                        f"λ_rel = {reg.lambda_rel:g})")
    context.add_asset_metadata({"table_3": table3_md(t3), **pictures(store, result_id, {"plot": ("Table 3", png)})})
    return dg.Output({"result_id": result_id, "model": regularized_checkpoints["model"]},
                     data_version=dg.DataVersion(result_id))


incremental_job = dg.define_asset_job("incremental_job", selection=dg.AssetSelection.assets("incremental_heads"),
                                      description="§3.2 for one model: base checkpoint, Θ-head and baselines.")
regularize_job = dg.define_asset_job("regularize_job", selection=dg.AssetSelection.assets("regularized_checkpoints"),
                                     description="§3.3 for one model: the control and regularized fine-tunes.")
regularization_report_job = dg.define_asset_job(
    "regularization_report_job", selection=dg.AssetSelection.assets("regularization_report"),
    description="§3.3 for one model: Table 3 from the children's results (run after their model_job).")
