"""Jobs: one per partitioning (Dagster runs one partition key per run)."""

import dagster as dg

dataset_job = dg.define_asset_job("dataset_job", selection=dg.AssetSelection.assets("dataset"),
                                  description="Render or index the dataset.")
model_job = dg.define_asset_job(
    "model_job", selection=dg.AssetSelection.assets("checkpoint", "logits", "moments", "dependencies"),
    description="One model: checkpoint → logits → moments → within-model dependencies (with checks).")
pair_job = dg.define_asset_job("pair_job", selection=dg.AssetSelection.assets("between_dependencies"),
                               description="One ordered model pair: between-model dependencies.")
comparisons_job = dg.define_asset_job("comparisons_job", selection=dg.AssetSelection.assets("comparisons"),
                                      description="Compare every model's and pair's dependency graphs.")
