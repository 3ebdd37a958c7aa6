"""Jobs: one per partitioning (Dagster runs one partition key per run)."""

from __future__ import annotations

import dagster as dg

from neudep_assets.defs.partitions import models_partitions, pairs_partitions

dataset_job = dg.define_asset_job("dataset_job", selection=dg.AssetSelection.assets("dataset"),
                                  description="Render or index the dataset.")
model_job = dg.define_asset_job(
    "model_job", partitions_def=models_partitions,
    selection=dg.AssetSelection.assets("checkpoint", "logits", "moments", "dependencies"),
    description="One model: checkpoint → logits → moments → within-model dependencies (with checks).")
pair_job = dg.define_asset_job("pair_job", partitions_def=pairs_partitions,
                               selection=dg.AssetSelection.assets("between_dependencies"),
                               description="One ordered model pair: between-model dependencies.")
