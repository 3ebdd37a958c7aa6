"""The comparisons asset: every model and pair side by side, and how stable the graphs are."""


import dagster as dg
import pandas as pd

from neudep_assets.defs.automation import COMPARISONS_CONDITION
from neudep_assets.defs.report import md_table
from neudep_assets.defs.resources import Neudep
from neudep_assets.defs.store_keys import present, store_keys
from neudep_assets.lib.analysis.comparisons import compare
from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.config import stable_hash
from neudep_assets.lib.data import PreparedDataset

COMPARISONS_SCIENCE = ("neudep_assets.lib.analysis.comparisons",)
COMPARISONS_CODE_VERSION = code_version(*COMPARISONS_SCIENCE)
# one row per analysis (dependency_run_id) and λ: a number never mixes two analyses
SUMMARY_SQL = """
SELECT kind, source_model, model, left(checkpoint_sha256, 12) AS checkpoint, logit_gauge, dependency_run_id,
       lambda_rel,
       count(*) AS targets,
       round(avg((n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2)::INT), 3) AS share_with_dependency,
       round(avg(n_sources), 2) AS mean_sources, round(median(rel_err), 4) AS median_rel_err,
       round(100 * avg(orig_acc - acc), 3) AS acc_loss_pts, round(100 * avg(orig_pos_acc - pos_acc), 2) AS pos_acc_loss_pts
FROM dependency_summary WHERE dataset = $dataset AND lambda_mode = 'relative'
GROUP BY kind, source_model, model, checkpoint, logit_gauge, dependency_run_id, lambda_rel
ORDER BY kind DESC, source_model, model, checkpoint, logit_gauge DESC, dependency_run_id, lambda_rel DESC
"""


@dg.asset(code_version=COMPARISONS_CODE_VERSION, group_name="comparisons", kinds={"duckdb"},
          automation_condition=COMPARISONS_CONDITION,
          deps=[dg.AssetDep("dependencies", partition_mapping=dg.AllPartitionMapping()),
                dg.AssetDep("between_dependencies", partition_mapping=dg.AllPartitionMapping())])
def comparisons(context: dg.AssetExecutionContext, neudep: Neudep, dataset: dict) -> dg.Output[dict]:
    """All models and pairs of the dataset compared: per λ the share of classes with a dependency,
    sources, Rel Err and accuracy loss; Jaccard overlap of within and between graphs; stability of
    each graph across λ and across checkpoint versions. Analyses in different logit gauges are never
    mixed: the summary has one row per gauge (raw, and centered where computed, e.g. the cross-check at
    λ_rel 0.1), so the share under both sits side by side. Queryable as the `comparisons` view."""
    store = neudep.store()
    store.ensure_catalog()  # for users; the asset itself reads the store's in-memory views
    ds = PreparedDataset.from_json(dataset)
    with store.connect() as con:
        runs = con.execute("SELECT * REPLACE (coalesce(logit_gauge, 'raw') AS logit_gauge) FROM dependency_runs "
                           "WHERE dataset_id = $d AND lambda_mode = 'relative'",
                           {"d": ds.dataset_id}).df()
        edges = con.execute("SELECT d.* FROM dependencies d JOIN (SELECT DISTINCT dependency_run_id FROM "
                            "dependency_runs WHERE dataset_id = $d) USING (dependency_run_id)", {"d": ds.dataset_id}).df()
        summary = con.execute(SUMMARY_SQL, {"dataset": ds.dataset_id}).df()
    comparison_id = stable_hash(sorted(set(runs["dependency_run_id"])) + [COMPARISONS_CODE_VERSION])
    if present(store, "comparisons", ds.dataset_id) and \
            (store.read("comparisons", ds.dataset_id)["comparison_id"] == comparison_id).all():
        context.log.info("comparisons unchanged")
    else:
        rows = compare(runs, edges, ds.n_classes)
        summary_rows = summary.melt(id_vars=["kind", "source_model", "model", "checkpoint", "logit_gauge",
                                             "dependency_run_id", "lambda_rel"], var_name="metric", value_name="value")
        detail = "checkpoint " + summary_rows.pop("checkpoint") + ", analysis " + summary_rows.pop("dependency_run_id")
        summary_rows = summary_rows.assign(detail=detail, kind="summary_" + summary_rows["kind"])
        all_rows = pd.concat([rows, summary_rows], ignore_index=True)
        store.write("comparisons", ds.dataset_id, all_rows.assign(comparison_id=comparison_id),
                    run_id=context.run.run_id, code_version=COMPARISONS_CODE_VERSION)
    rows = store.read("comparisons", ds.dataset_id)
    overlap = rows[rows["kind"] == "within_vs_between"].pivot_table(
        index=["source_model", "model", "logit_gauge", "lambda_rel"], columns="metric", values="value").reset_index()
    lam = rows[rows["kind"] == "lambda_stability"].pivot_table(
        index=["kind", "source_model", "model", "logit_gauge", "lambda_rel"], columns="metric",
        values="value").reset_index()
    return dg.Output({"comparison_id": comparison_id, "dataset_id": ds.dataset_id},
                     data_version=dg.DataVersion(comparison_id),
                     metadata={"summary": md_table(summary), "within_vs_between_overlap": md_table(overlap),
                               "stability_across_lambda": md_table(lam), "runs_compared": len(set(runs["dependency_run_id"])),
                               **store_keys(tables=[("comparisons", ds.dataset_id)])})
