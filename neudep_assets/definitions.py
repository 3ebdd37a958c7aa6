"""The one Definitions object of the neudep code location."""

import dagster as dg

from neudep_assets.defs.checks import moments_symmetric_psd
from neudep_assets.defs.comparison_assets import comparisons
from neudep_assets.defs.dataset_assets import dataset
from neudep_assets.defs.dependency_assets import between_dependencies, dependencies
from neudep_assets.defs.jobs import comparisons_job, dataset_job, model_job, pair_job
from neudep_assets.defs.model_assets import checkpoint, logits, moments
from neudep_assets.defs.resources import default_resources
from neudep_assets.defs.sensors import model_registry
from neudep_assets.defs.uses_assets import (incremental_heads, incremental_job, regularization_report,
                                            regularization_report_job, regularize_job, regularized_checkpoints)



def build_defs(config_path: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """The code location for one config file and data root (default: NEUDEP_CONFIG / NEUDEP_DATA)."""
    return dg.Definitions(
        assets=[dataset, checkpoint, logits, moments, dependencies, between_dependencies, comparisons,
                incremental_heads, regularized_checkpoints, regularization_report],
        asset_checks=[moments_symmetric_psd],  # the certificates are check_specs of the dependency assets
        jobs=[dataset_job, model_job, pair_job, comparisons_job, incremental_job, regularize_job,
              regularization_report_job],
        sensors=[model_registry],
        resources=default_resources(config_path, data_root),
    )


defs = build_defs()
