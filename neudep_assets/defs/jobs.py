"""Jobs (Dagster runs one partition key per run), and what of them is missing or stale.

`plan` is what `neudep demo` and the weekly schedule run: only the runs whose assets Dagster says are
MISSING or STALE (code version changed, or an input's data version moved since), or whose results the
store no longer holds (`store_missing`: deleted, quarantined, damaged, never committed), or whose data
changed (an ImageFolder's files), never a run to find a cached result.
"""

from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from neudep_assets.defs.partitions import pair_key
from neudep_assets.defs.store_keys import missing_in_store, recorded_keys

dataset_job = dg.define_asset_job("dataset_job", selection=dg.AssetSelection.assets("dataset"),
                                  description="Render or index the dataset.")
MODEL_ASSETS = ("checkpoint", "logits", "moments", "dependencies")
model_job = dg.define_asset_job(
    "model_job", selection=dg.AssetSelection.assets(*MODEL_ASSETS),
    description="One model: checkpoint → logits → moments → within-model dependencies (with checks).")
target_job = dg.define_asset_job("target_job", selection=dg.AssetSelection.assets("target_logits"),
                                 description="One model's logits as the target side of its pairs.")
pair_job = dg.define_asset_job("pair_job", selection=dg.AssetSelection.assets("between_dependencies"),
                               description="One ordered model pair: between-model dependencies.")
comparisons_job = dg.define_asset_job("comparisons_job", selection=dg.AssetSelection.assets("comparisons"),
                                      description="Compare every model's and pair's dependency graphs.")


class _Staleness:
    def __init__(self, asset_graph, instance: dg.DagsterInstance):
        # Dagster's own stale-status resolver (the UI's "stale" badges); its loading context is the
        # plain one Dagster offers outside a request.
        self._resolver = CachingStaleStatusResolver(instance, asset_graph, LoadingContextForTest(instance))

    def todo(self, keys, partition=None) -> list[str]:
        """The assets among `keys` that are missing or stale for `partition`."""
        return [k for k in keys if self._resolver.get_status(dg.AssetKey(k), partition)
                in (StaleStatus.MISSING, StaleStatus.STALE)]


def changed_checkpoints(neudep, instance: dg.DagsterInstance, models: list[str]) -> set[str]:
    """Models whose local checkpoint file no longer has the sha256 its checkpoint partition was last
    materialized with (Dagster cannot see a file change by itself)."""
    from neudep_assets.lib.models import weights_sha256

    out = set()
    for name in models:
        spec = neudep.spec(name)
        if not spec.checkpoint or not (Path(spec.checkpoint) / "model.safetensors").is_file():
            continue
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("checkpoint"), asset_partitions=[name]), limit=1).records
        last = records[0].asset_materialization.tags.get("dagster/data_version") if records else None
        if last is not None and last != weights_sha256(spec.checkpoint):
            out.add(name)
    return out


def dataset_changed(neudep, instance: dg.DagsterInstance) -> str | None:
    """The dataset's id now, when it differs from the one its last materialization recorded (an
    ImageFolder's images changed, were added or removed); None when unchanged or never materialized.
    A dataset that cannot be used (a symlink out of its tree, a name that is not UTF-8) fails here,
    naming the file, before any run."""
    from neudep_assets.lib.data.datasets import dataset_id_of

    event = instance.get_latest_materialization_event(dg.AssetKey("dataset"))
    last = event.asset_materialization.tags.get("dagster/data_version") if event and event.asset_materialization else None
    if last is None:
        return None
    now = dataset_id_of(neudep.project().dataset)
    return now if now != last else None


def store_missing(neudep, instance: dg.DagsterInstance, models: list[str]) -> dict[str | None, dict[str, list[str]]]:
    """partition (None for the dataset and the comparisons; a model; a pair key) -> {asset: what of its
    latest materialization's store results the store lacks}, plus the dataset when its data changed.
    The store decides: a result gone from it is missing whatever Dagster's event log says."""
    store, out = neudep.store(), {}

    def look(asset: str, partition) -> None:
        if gone := missing_in_store(store, recorded_keys(instance, asset, partition)):
            out.setdefault(partition, {})[asset] = [f"{g} not in the store" for g in gone]

    if (now := dataset_changed(neudep, instance)) is not None:
        out[None] = {"dataset": [f"its data changed (dataset id now {now})"]}
    look("dataset", None)
    for m in models:
        for asset in MODEL_ASSETS:
            look(asset, m)
    for a in models:
        for b in models:
            if a != b:
                look("between_dependencies", pair_key(a, b))
    look("comparisons", None)
    return out


def _from_first(todo: list[str]) -> list[str]:
    """A model's chain from its first missing or stale asset on: what reads a rerun asset is stale only
    once it has run (then a content-addressed rerun finds its result at once if nothing changed)."""
    return list(MODEL_ASSETS[min(MODEL_ASSETS.index(k) for k in todo):]) if todo else []


def plan(asset_graph, instance: dg.DagsterInstance, models: list[str], *, whole: bool = True,
         changed: set[str] = frozenset(), missing: dict | None = None) -> list[tuple]:
    """(job name, partition key, assets) of every run needed to bring the graph up to date, in order.

    `changed`: models whose checkpoint file changed (their whole model run is due). `missing`: what
    `store_missing` found gone from the store (or changed data), rerun as if Dagster said missing. `whole=False`
    (the schedule, whose runs start together) stops at the first level that has work: what reads it
    follows by its automation condition once it has run.
    """
    s, missing = _Staleness(asset_graph, instance), missing or {}

    def todo(keys, partition=None) -> list[str]:
        gone = missing.get(partition, {})
        return [k for k in keys if k in gone or k in s.todo([k], partition)]

    steps = [("dataset_job", None, todo(["dataset"]))]
    steps += [("model_job", m, list(MODEL_ASSETS) if m in changed else _from_first(todo(MODEL_ASSETS, m)))
              for m in models]
    levels = [steps[:1], steps[1:], [("target_job", m, todo(["target_logits"], m)) for m in models]]
    levels.append([("pair_job", pair_key(a, b), todo(["between_dependencies"], pair_key(a, b)))
                   for a in models for b in models if a != b])
    levels.append([("comparisons_job", None, todo(["comparisons"]))])
    out = []
    for level in levels:
        work = [step for step in level if step[2]]
        out += work
        if work and not whole:
            break
    return out


def uses_steps(asset_graph, instance: dg.DagsterInstance, project):
    """(job name, partition key, assets) of the §3.2 / §3.3 runs that are missing or stale, in order: a
    generator, each step planned after the one before it ran (a parent's new children are then seen)."""
    def todo(keys, partition):
        return _Staleness(asset_graph, instance).todo(keys, partition)

    for m in project.incremental.models:
        if assets := todo(["incremental_heads"], m):
            yield "incremental_job", m, assets
    for parent in project.regularization.models:
        if assets := todo(["regularized_checkpoints"], parent):
            yield "regularize_job", parent, assets
        for child, _, _ in project.regularization.children(parent):
            if assets := _from_first(todo(MODEL_ASSETS, child)):
                yield "model_job", child, assets
        if assets := todo(["regularization_report"], parent):
            yield "regularization_report_job", parent, assets


def _schedule_fn(job_name: str):
    def fn(context: dg.ScheduleEvaluationContext):
        neudep = context.resources.neudep
        names = neudep.model_names()
        changed = changed_checkpoints(neudep, context.instance, names)
        missing = store_missing(neudep, context.instance, names)
        for job, partition, assets in plan(context.repository_def.asset_graph, context.instance, names, whole=False,
                                           changed=changed, missing=missing):
            if job == job_name:
                yield dg.RunRequest(asset_selection=[dg.AssetKey(a) for a in assets], partition_key=partition,
                                    tags={"neudep/reason": "scheduled rerun of missing (or lost from the store), "
                                                           "failed or stale"})
    return fn


def rerun_schedules(cron: str) -> list[dg.ScheduleDefinition]:
    """The cron schedule (`schedule:` in neudep.yaml, default weekly) that reruns what is missing (in
    Dagster's records or in the store), failed or stale, and a changed dataset, one per job (a run has
    one partitioning); on when `make ui` starts. At a tick only
    the first level with work runs (dataset, models, targets, pairs, comparisons): what reads it follows
    by its automation condition."""
    jobs = {"dataset_job": dataset_job, "model_job": model_job, "target_job": target_job, "pair_job": pair_job,
            "comparisons_job": comparisons_job}
    return [dg.ScheduleDefinition(
        name=f"rerun_stale_{name.removesuffix('_job')}", cron_schedule=cron, execution_fn=_schedule_fn(name), job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING, required_resource_keys={"neudep"},
        description=f"Reruns the missing, failed or stale partitions of {name} (Dagster's code and data versions "
                    "say which, and the store: a result gone from it is missing).") for name, job in jobs.items()]
