"""Partitions: one per registered model (dynamic), the ordered model pairs source × target, and per use
of dependencies the models it applies to.

The pairs are `MultiPartitionsDefinition(source × target)`. Their target dimension runs over
`model_targets`, a copy of `models` with the same keys (kept in sync by `register` and the sensor):
Dagster 1.13's MultiToSingleDimensionPartitionMapping ignores its `partition_dimension_name` when
mapping, so two dimensions over the same partitions definition cannot be told apart.

The uses (paper §3.2, §3.3) have partitions of their own, `incremental_models` and
`regularization_models`: the models the config lists under `incremental.models` and
`regularization.models`, added by `register` and the sensor like the models. A regularization child
(`cnn.reg0`) is a model but no partition of a use unless a config lists it there, so the UI shows no
use partition that can never run. The uses read their model's assets by key
(`IdentityPartitionMapping` maps between two dynamic partitions definitions by partition key).
"""


import dagster as dg

models_partitions = dg.DynamicPartitionsDefinition(name="models")
targets_partitions = dg.DynamicPartitionsDefinition(name="model_targets")
pairs_partitions = dg.MultiPartitionsDefinition({"source": models_partitions, "target": targets_partitions})
incremental_partitions = dg.DynamicPartitionsDefinition(name="incremental_models")
regularization_partitions = dg.DynamicPartitionsDefinition(name="regularization_models")
_DYNAMIC = (models_partitions, targets_partitions, incremental_partitions, regularization_partitions)

#: a use's partition reads the model partition of the same key (checkpoint, logits, dependencies)
SAME_MODEL = dg.IdentityPartitionMapping()

#: between_dependencies[source|target] reads the source's moments (C = E[f fᵀ] and its logits) and the
#: target's logits (`target_logits`): each of its two models through its own dimension, no other model.
SOURCE = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="source")
TARGET = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="target")


def pair_key(source: str, target: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"source": source, "target": target})


def parse_pair(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(source, target) of a pair partition key ('source|target' as a string)."""
    dims = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else \
        dict(zip(("source", "target"), key.split("|"))) if key.count("|") == 1 else {}
    if not dims.get("source") or not dims.get("target"):
        raise ValueError(f"model pair partition {key!r} is not of the form 'source|target'")
    return dims["source"], dims["target"]


def uncomputed_note(source: str, target: str, derived: set[str]) -> str | None:
    """Why the pair source|target is never computed (None: it is): source = target is the within
    analysis; a derived model (a regularization child) is read by its parent's report, not paired."""
    if source == target:
        return f"source = target: the within analysis, see dependencies[{source}]; nothing computed"
    if kids := sorted({source, target} & derived):
        return (f"{', '.join(kids)}: derived model (a regularization fine-tune, read by its parent's "
                "regularization_report); pairs run among the config's and watched models; nothing computed")
    return None


def record_uncomputed_pairs(instance: dg.DagsterInstance, derived: set[str]) -> list[str]:
    """Record, as a materialization with a note and no run, each pair partition that is never computed
    and not recorded yet (so the UI does not show it as missing forever); nothing is computed or written
    to the store. Returns the pair keys recorded."""
    key = dg.AssetKey("between_dependencies")
    have = {str(k) for k in instance.get_materialized_partitions(key)}
    done = []
    for s in instance.get_dynamic_partitions(models_partitions.name):
        for t in instance.get_dynamic_partitions(targets_partitions.name):
            if (note := uncomputed_note(s, t, derived)) and str(pair_key(s, t)) not in have:
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    key, partition=pair_key(s, t), metadata={"computed": False, "note": note},
                    tags={"dagster/data_version": f"not-computed-{s}|{t}"}))
                done.append(f"{s}|{t}")
    return done


def use_models(project) -> dict[str, list[str]]:
    """Per use's partitions definition, the models the config (`project`) applies it to."""
    return {incremental_partitions.name: list(project.incremental.models),
            regularization_partitions.name: list(project.regularization.models)}


def missing_models(names: list[str], instance: dg.DagsterInstance,
                   uses: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Per partitions definition, the model names it does not hold yet: `names` for `models` and
    `model_targets`, `uses` (from `use_models`) for the uses' own; the models first."""
    want = {models_partitions.name: names, targets_partitions.name: names, **(uses or {})}
    out = {}
    for name, keys in want.items():
        have = set(instance.get_dynamic_partitions(name))
        out[name] = [m for m in dict.fromkeys(keys) if m not in have]
    return out


def add_requests(missing: dict[str, list[str]]) -> list:
    """The sensor's requests adding the missing keys."""
    pdefs = {p.name: p for p in _DYNAMIC}
    return [pdefs[name].build_add_request(keys) for name, keys in missing.items() if keys]


def register(names: list[str], instance: dg.DagsterInstance, uses: dict[str, list[str]] | None = None) -> list[str]:
    """Add models as partitions, and each use's models (`use_models`) as its partitions (idempotent;
    the pairs follow from the models); returns the new models."""
    missing = missing_models(names, instance, uses)
    for name, keys in missing.items():
        if keys:
            instance.add_dynamic_partitions(name, keys)
    return missing[models_partitions.name]
