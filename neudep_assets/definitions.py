"""The one Definitions object of the neudep code location."""

import dagster as dg

from neudep_assets.defs.automation import automation_sensor
from neudep_assets.defs.checks import moments_symmetric_psd
from neudep_assets.defs.comparison_assets import comparisons
from neudep_assets.defs.dataset_assets import dataset
from neudep_assets.defs.dependency_assets import dependency_assets, identity
from neudep_assets.defs.jobs import (comparisons_job, dataset_job, model_job, pair_job, rerun_schedules,
                                   target_job)
from neudep_assets.defs.model_assets import checkpoint, logits, moments, target_logits
from neudep_assets.defs.resources import default_resources
from neudep_assets.defs.sensors import model_registry, store_watch
from neudep_assets.defs.uses_assets import (incremental_heads, incremental_job, regularization_report,
                                            regularization_report_job, regularize_job, regularized_checkpoints)
from neudep_assets.defs.executors import executor_for
from neudep_assets.lib.config import ConfigError, load_config, stable_hash


def _config_versions(project) -> dict[str, str]:
    """What each asset reads from neudep.yaml, hashed into its code version: editing it makes the
    asset stale (Dagster's staleness), so `neudep demo` and the schedule rerun it."""
    dep = stable_hash(identity(project.dependencies), 8)  # not how the targets are chunked: same rows
    return {"dataset": stable_hash(project.dataset, 8), "checkpoint": stable_hash(project.models, 8),
            "moments": project.dependencies.fit_split, "dependencies": dep, "between_dependencies": dep,
            "incremental_heads": stable_hash(project.incremental, 8),
            "regularized_checkpoints": stable_hash(project.regularization, 8),
            "regularization_report": stable_hash(project.regularization, 8)}


def build_defs(config_path_: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """The code location for one config file and data root (default: NEUDEP_CONFIG / NEUDEP_DATA)."""
    try:
        project = load_config(config_path_)
    except ConfigError:
        project = None  # the assets' runs report the config error (naming file and key)
    versions = _config_versions(project) if project else {}

    def stamp(spec: dg.AssetSpec) -> dg.AssetSpec:
        extra = versions.get(spec.key.to_user_string())
        return spec.replace_attributes(code_version=f"{spec.code_version}-{extra}") if extra else spec

    dependencies, between_dependencies = (dependency_assets(project.dependencies.chunk_steps, project.dependencies)
                                          if project else dependency_assets())
    assets = [a.map_asset_specs(stamp) for a in
              (dataset, checkpoint, logits, moments, target_logits, dependencies, between_dependencies,
               comparisons, incremental_heads, regularized_checkpoints, regularization_report)]
    return dg.Definitions(
        assets=assets,
        asset_checks=[moments_symmetric_psd],  # the certificates are check_specs of the dependency assets
        jobs=[dataset_job, model_job, target_job, pair_job, comparisons_job, incremental_job, regularize_job,
              regularization_report_job],
        sensors=[model_registry, store_watch, automation_sensor],
        schedules=rerun_schedules(project.schedule if project else "0 4 * * 1"),
        executor=executor_for(project.executor) if project else None,
        resources=default_resources(config_path_, data_root),
    )


defs = build_defs()

