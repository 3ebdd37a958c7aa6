"""The model registry sensor: config models and watched checkpoint folders become partitions; a new or
changed checkpoint launches its model's analysis (what reads it follows by automation conditions)."""


import json
from pathlib import Path

import dagster as dg

from neudep_assets.defs.jobs import comparisons_job, dataset_job, model_job, pair_job, plan, store_missing
from neudep_assets.defs.partitions import add_requests, missing_models, use_models
from neudep_assets.defs.resources import Neudep
from neudep_assets.lib.models import WEIGHTS_NAME, CheckpointError, weights_sha256
from neudep_assets.lib.models.watch import convert_pickle


@dg.sensor(job=model_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def model_registry(context: dg.SensorEvaluationContext, neudep: Neudep) -> dg.SensorResult:
    """Registers the config's models and every checkpoint folder of the watched directories (`watch:`,
    default data/checkpoints/incoming) as model partitions (and the models each use lists as that
    use's partitions), and launches a model's run when its partition is new or its weights file
    changed. The weights are hashed only when their size or mtime moved; the sha256 is in the run
    key, so the same work is never launched twice. Refused folders (bad name, symlink out of the tree,
    pickle that needs more than weights_only=True) and removed ones are logged; a removed model's
    results stay in the store."""
    project = neudep.project()
    cursor = json.loads(context.cursor or "{}")  # model -> [size, mtime_ns, sha256] of its weights
    watched, refused = neudep.watched(project)
    for folder, reason in refused:
        context.log.warning(f"refused: {reason}")
    local = {m.name: m for m in project.models if m.checkpoint}
    seen, refused_now = {}, set()
    for w in watched:
        stamp = w.stamp()
        old = cursor.get(w.name)
        sha = old[2] if old and old[:2] == stamp else w.sha256()
        if old and len(old) > 3 and old[2] == sha:  # the same refused pickle: not retried
            refused_now.add(w.name)
            seen[w.name] = old
            continue
        if w.is_pickle and not (old and old[2] == sha):
            try:
                convert_pickle(w, neudep.data_root)
            except CheckpointError as exc:
                context.log.warning(f"refused: {exc}")
                refused_now.add(w.name)
                seen[w.name] = [*stamp, sha, "refused"]
                continue
        seen[w.name] = [*stamp, sha]
    names = [m.name for m in project.models] + [w.name for w in watched if w.name not in refused_now]
    missing = missing_models(names, context.instance, use_models(project))
    new = missing["models"]
    if context.instance.get_latest_materialization_event(dg.AssetKey("dataset")) is None:
        # the automation condition sensor renders the dataset first; the models run after it
        return dg.SensorResult(cursor=context.cursor, dynamic_partitions_requests=add_requests(missing),
                               skip_reason="waiting for the dataset to be materialized")
    runs = []
    for name, spec in local.items():
        weights = Path(spec.checkpoint) / WEIGHTS_NAME
        if weights.is_file():
            st = weights.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            old = cursor.get(name)
            seen[name] = [*stamp, old[2] if old and old[:2] == stamp else weights_sha256(spec.checkpoint)]
    for name, (size, mtime, sha, *refused_mark) in seen.items():
        if not refused_mark and (name in new or (cursor.get(name) or [None] * 3)[2] != sha):
            runs.append(dg.RunRequest(run_key=f"{name}@{sha}", partition_key=name,
                                      tags={"neudep/checkpoint_sha256": sha}))
    done = context.instance.get_materialized_partitions(dg.AssetKey("checkpoint"))
    for name in [n for n in names if n not in seen and n not in done]:  # trained here or from the hub
        runs.append(dg.RunRequest(run_key=f"{name}@new", partition_key=name))
    for name in sorted(set(cursor) - set(seen)):
        context.log.info(f"checkpoint of model {name!r} is gone; its results stay queryable in the store")
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(seen),
                           dynamic_partitions_requests=add_requests(missing))


@dg.sensor(jobs=[dataset_job, model_job, pair_job, comparisons_job], minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.RUNNING)
def store_watch(context: dg.SensorEvaluationContext, neudep: Neudep) -> dg.SensorResult | dg.SkipReason:
    """Asks the result store for what each materialization wrote (its `store_keys`) and indexes the
    dataset: an analysis, table file or artifact deleted, quarantined or damaged, or an ImageFolder
    whose images changed, launches the first run that recomputes it (what reads it follows by the
    automation conditions). The store decides what is missing, not Dagster's records."""
    missing = store_missing(neudep, context.instance, neudep.model_names())
    if not missing:
        return dg.SkipReason("the store holds every materialized result; the dataset is unchanged")
    runs = []
    for job, partition, assets in plan(context.repository_def.asset_graph, context.instance, neudep.model_names(),
                                       whole=False, missing=missing):
        if assets and any(a in missing.get(partition, {}) for a in assets):
            last = context.instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(assets[0]), asset_partitions=[partition] if partition else None), limit=1).records
            stamp = last[0].run_id if last else "never"  # a result lost again after its rerun is launched again
            runs.append(dg.RunRequest(job_name=job, partition_key=partition,
                                      asset_selection=[dg.AssetKey(a) for a in assets],
                                      run_key=f"store-{job}-{partition}-{stamp}",
                                      tags={"neudep/reason": "; ".join(missing.get(partition, {}).get(assets[0], []))[:200]
                                            or "lost from the store"}))
    return dg.SensorResult(run_requests=runs)
