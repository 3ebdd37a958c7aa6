"""Dynamic partitions: one per registered model, one per ordered model pair."""


import dagster as dg

from neudep_assets.lib.config import ProjectConfig

models_partitions = dg.DynamicPartitionsDefinition(name="models")
pairs_partitions = dg.DynamicPartitionsDefinition(name="model_pairs")
PAIR_SEP = "->"


def pair_key(source: str, target: str) -> str:
    return f"{source}{PAIR_SEP}{target}"


def parse_pair(key: str) -> tuple[str, str]:
    source, sep, target = key.partition(PAIR_SEP)
    if not sep or not source or not target:
        raise ValueError(f"model pair partition {key!r} is not of the form 'source->target'")
    return source, target


def missing_partitions(project: ProjectConfig, instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Model and pair keys of the config that the instance does not know yet."""
    models = [m.name for m in project.models]
    pairs = [pair_key(a, b) for a, b in project.model_pairs()]
    have_m = set(instance.get_dynamic_partitions(models_partitions.name))
    have_p = set(instance.get_dynamic_partitions(pairs_partitions.name))
    return [m for m in models if m not in have_m], [p for p in pairs if p not in have_p]


def register(project: ProjectConfig, instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Add the config's models and pairs as partitions (idempotent); returns what was added."""
    new_m, new_p = missing_partitions(project, instance)
    if new_m:
        instance.add_dynamic_partitions(models_partitions.name, new_m)
    if new_p:
        instance.add_dynamic_partitions(pairs_partitions.name, new_p)
    return new_m, new_p
