"""Per-model assets: checkpoint → logits (per split) → second moments."""


import hashlib
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from neudep_assets.defs.automation import CHECKPOINT_CONDITION, FOLLOW_INPUTS
from neudep_assets.defs.partitions import models_partitions, targets_partitions
from neudep_assets.defs.report import md_table
from neudep_assets.defs.resources import Neudep
from neudep_assets.defs.store_keys import present, record_row, store_keys
from neudep_assets.lib.models.checkpoints import CheckpointInfo, obtain_checkpoint, split_logits
from neudep_assets.lib.models.finetune import derived_checkpoint
from neudep_assets.lib.config import stable_hash, stable_json
from neudep_assets.lib.data import PreparedDataset
from neudep_assets.lib.analysis.moments import check_finite, second_moment, spectrum_summary
from neudep_assets.lib.analysis.offsets import logit_stats, offset_warning
from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.store import load_arrays, save_arrays

# the lib modules each asset's results depend on; their source (transitively) is the code version
CHECKPOINT_SCIENCE = ("neudep_assets.lib.models.checkpoints",)
LOGITS_SCIENCE = ("neudep_assets.lib.models.checkpoints", "neudep_assets.lib.analysis.moments",
                  "neudep_assets.lib.analysis.offsets")
MOMENTS_SCIENCE = ("neudep_assets.lib.analysis.moments",)
CHECKPOINT_CODE_VERSION = code_version(*CHECKPOINT_SCIENCE)
LOGITS_CODE_VERSION = code_version(*LOGITS_SCIENCE)
MOMENTS_CODE_VERSION = code_version(*MOMENTS_SCIENCE)


class LogitsConfig(dg.Config):
    """Launchpad settings of the logits asset."""

    batch_size: Optional[int] = None  # images per forward pass; unset = the model entry's logits_batch_size, else automatic


@dg.asset(partitions_def=models_partitions, code_version=CHECKPOINT_CODE_VERSION, group_name="models",
          pool="gpu", kinds={"pytorch"}, automation_condition=CHECKPOINT_CONDITION)
def checkpoint(context: dg.AssetExecutionContext, neudep: Neudep, dataset: dict) -> dg.Output[dict]:
    """The model's checkpoint in timm's folder format: trained here, a local folder, a hub model, or a
    fine-tuned child of another model (`regularized_checkpoints`).

    Its data version is the sha256 of `model.safetensors`.
    """
    project, store = neudep.project(), neudep.store()
    ds = PreparedDataset.from_json(dataset)
    derived = None
    if context.partition_key not in {m.name for m in project.models}:
        derived = derived_checkpoint(store, context.partition_key, ds.n_classes)  # a fine-tuned child (§3.3)
    if derived is None:
        spec = neudep.spec(context.partition_key)  # a config entry or a watched checkpoint folder
        info = obtain_checkpoint(spec, ds, store.root, device=neudep.pick_device(), log=context.log.info)
    else:
        info = derived[0]
    ck_key = record_row(store, "checkpoints", info.sha256, {
        "checkpoint_sha256": info.sha256, "model": context.partition_key, "arch": info.arch, "origin": info.origin,
        "source": info.source, "parent_sha256": derived[1]["parent_sha256"] if derived else None,
        "path": info.path, "dataset_id": ds.dataset_id,
        "num_classes": info.num_classes, "num_features": info.num_features, "n_params": info.n_params,
        "train_val_acc": info.train_val_acc, "train_seconds": info.train_seconds,
        "config_json": derived[1]["config_json"] if derived else stable_json(spec)},
        run_id=context.run.run_id, code_version=CHECKPOINT_CODE_VERSION)
    return dg.Output(info.to_json(), data_version=dg.DataVersion(info.sha256), metadata={
        "sha256": info.sha256, "path": dg.MetadataValue.path(info.path), "origin": info.origin,
        "arch": info.arch, "params": info.n_params, "feature_dim": info.num_features,
        "val_acc_after_training": info.train_val_acc if info.train_val_acc is not None else float("nan"),
        "train_seconds": info.train_seconds if info.train_seconds is not None else float("nan"),
        **store_keys(tables=[("checkpoints", ck_key)]),
    })


def _model_entry(neudep: Neudep, name: str):
    """The config's entry of model `name`; a fine-tuned child (§3.3, not in the config) uses its parent's."""
    project, store = neudep.project(), neudep.store()
    if name not in {m.name for m in project.models} and store.has("derived_models", name):
        name = str(store.read("derived_models", name)["parent_model"].iloc[0])
    return neudep.spec(name)


@dg.asset(partitions_def=models_partitions, code_version=LOGITS_CODE_VERSION, group_name="models",
          pool="gpu", kinds={"pytorch"}, automation_condition=FOLLOW_INPUTS)
def logits(context: dg.AssetExecutionContext, config: LogitsConfig, neudep: Neudep, dataset: dict,
           checkpoint: dict) -> dg.Output[dict]:
    """Raw logits of the model on every dataset split (GPU when present), with accuracy per split and
    the offset diagnostics: the per-sample mean logit over the classes m(x) (mean, std), its share of
    E[f²] (`offset_share`; softmax ignores m), the top logit and the within-sample spread. A warning
    when the offset share exceeds 0.3: raw-gauge dependencies of such a model mostly reproduce m."""
    store = neudep.store()
    ds, info = PreparedDataset.from_json(dataset), CheckpointInfo(**checkpoint)
    device = neudep.pick_device()
    if config.batch_size is not None and config.batch_size < 1:
        raise dg.Failure(f"logits config: batch_size must be ≥ 1 (unset = automatic), got {config.batch_size}")
    batch_size = config.batch_size or _model_entry(neudep, info.model).logits_batch_size  # None: automatic
    out, rows, stats, warnings, keys = {}, [], [], [], []
    for split in ds.splits:
        set_id = f"{info.sha256[:16]}-{ds.dataset_id}-{split}-{LOGITS_CODE_VERSION[:8]}"
        path = store.artifact("logits", set_id)
        if present(store, "logit_sets", set_id) and path.is_file():
            row = {**store.read("logit_sets", set_id).iloc[0].to_dict(), "path": str(path)}
            row = {k: v for k, v in row.items() if k not in ("dagster_run_id", "code_version", "written_at")}
        else:
            context.log.info(f"logits of {info.model} on {split} ({ds.counts.get(split)} samples) on {device}")
            lg, labels, ids = split_logits(info, ds, split, device=device, batch_size=batch_size,
                                           log=context.log.info)
            check_finite(lg, f"logits of model {info.model} ({info.path}) on split {split}")
            lg = lg.astype(np.float32)
            labelled = labels >= 0
            acc = float((lg[labelled].argmax(1) == labels[labelled]).mean()) if labelled.any() else float("nan")
            save_arrays(path, logits=lg, labels=labels.astype(np.int64), sample_ids=ids.astype(str))
            row = {"logit_set_id": set_id, "checkpoint_sha256": info.sha256, "model": info.model,
                   "dataset_id": ds.dataset_id, "split": split, "n_samples": len(lg), "n_classes": lg.shape[1],
                   "logits_sha256": hashlib.sha256(lg.tobytes()).hexdigest(),
                   "samples_sha256": hashlib.sha256("\n".join(ids.astype(str)).encode()).hexdigest(),
                   "accuracy": acc, "path": str(path)}
        keys.append(("logit_sets", record_row(store, "logit_sets", set_id, {**row, "model": context.partition_key},
                                              run_id=context.run.run_id, code_version=LOGITS_CODE_VERSION)))
        if present(store, "logit_stats", set_id):
            st = store.read("logit_stats", set_id).iloc[0].to_dict()
        else:  # also for logits computed before the diagnostics existed
            st = {"logit_set_id": set_id, "checkpoint_sha256": info.sha256, "model": info.model,
                  "dataset_id": ds.dataset_id, "split": split, **logit_stats(load_arrays(row["path"])["logits"])}
        keys.append(("logit_stats", record_row(store, "logit_stats", set_id, {
            **{k: st[k] for k in st if k not in ("dagster_run_id", "code_version", "written_at")},
            "model": context.partition_key}, run_id=context.run.run_id, code_version=LOGITS_CODE_VERSION)))
        stats.append({k: st[k] for k in ("split", "mean_logit_mean", "mean_logit_std", "offset_share",
                                         "top_logit_mean", "within_sample_std")})
        if (w := offset_warning(info.model, split, float(st["offset_share"]))) is not None:
            context.log.warning(w)
            warnings.append(w)
        out[split] = {k: row[k] for k in ("logit_set_id", "path", "accuracy", "n_samples", "logits_sha256",
                                          "samples_sha256")}
        rows.append({"split": split, "samples": row["n_samples"], "accuracy": row["accuracy"]})
    version = stable_hash([out[s]["logits_sha256"] for s in sorted(out)])
    return dg.Output({"model": info.model, "checkpoint_sha256": info.sha256, "dataset_id": ds.dataset_id,
                      "splits": out}, data_version=dg.DataVersion(version),
                     metadata={"accuracy": md_table(pd.DataFrame(rows)), "device": device,
                               "val_accuracy": float(out.get("val", {}).get("accuracy", float("nan"))),
                               "logit_offsets": md_table(pd.DataFrame(stats)),
                               "offset_share": float(max(s["offset_share"] for s in stats)),
                               **({"offset_warning": dg.MetadataValue.md("\n\n".join(warnings))} if warnings else {}),
                               **store_keys(tables=keys, artifacts=[("logits", s["logit_set_id"]) for s in out.values()])})


@dg.asset(partitions_def=models_partitions, code_version=MOMENTS_CODE_VERSION, group_name="dependencies",
          kinds={"numpy"}, automation_condition=FOLLOW_INPUTS)
def moments(context: dg.AssetExecutionContext, neudep: Neudep, logits: dict) -> dg.Output[dict]:
    """C = E[f fᵀ] (uncentered, float64) of the raw logits on the fit split, with its spectrum (the
    pointer also carries the model's logits, which between-model pairs read as their source side)."""
    project, store = neudep.project(), neudep.store()
    split = project.dependencies.fit_split
    src = logits["splits"][split]
    moments_id = f"{src['logit_set_id']}-second-{MOMENTS_CODE_VERSION[:8]}"
    path = store.artifact("moments", moments_id)
    if present(store, "moments", moments_id) and path.is_file():
        row = {**store.read("moments", moments_id).iloc[0].to_dict(), "path": str(path)}
        row = {k: v for k, v in row.items() if k not in ("dagster_run_id", "code_version", "written_at")}
    else:
        lg = load_arrays(src["path"])["logits"]
        C = second_moment(lg)
        spec = spectrum_summary(C)
        save_arrays(path, C=C)
        row = {"moments_id": moments_id, "kind": "second", "model": logits["model"],
               "checkpoint_sha256": logits["checkpoint_sha256"], "dataset_id": logits["dataset_id"],
               "split": split, "n_samples": len(lg), "n_classes": C.shape[0], "path": str(path), **spec}
    key = record_row(store, "moments", moments_id, {**row, "model": context.partition_key}, run_id=context.run.run_id,
                     code_version=MOMENTS_CODE_VERSION)
    return dg.Output({"moments_id": moments_id, "path": row["path"], "split": split, "model": logits["model"],
                      "checkpoint_sha256": logits["checkpoint_sha256"], "dataset_id": logits["dataset_id"],
                      "logits": logits},
                     data_version=dg.DataVersion(moments_id),
                     metadata={"n_classes": int(row["n_classes"]), "rank": int(row["rank"]),
                               "min_eig": float(row["min_eig"]), "max_eig": float(row["max_eig"]),
                               "fit_split": split,
                               **store_keys(tables=[("moments", key)], artifacts=[("moments", moments_id)])})


@dg.asset(partitions_def=targets_partitions, group_name="dependencies", automation_condition=FOLLOW_INPUTS,
          ins={"logits": dg.AssetIn(partition_mapping=dg.IdentityPartitionMapping())})
def target_logits(logits: dict) -> dg.Output[dict]:
    """The model's logits as the target side of between-model pairs (the same pointer; nothing is
    computed). Partitioned by `model_targets`, the pairs' target dimension (see defs/partitions.py)."""
    return dg.Output(logits, data_version=dg.DataVersion(stable_hash(logits)))
