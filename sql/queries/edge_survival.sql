-- Did an edge survive a new checkpoint? Every within-model edge at λ, per logit gauge, counted over the
-- analyses of the model in that gauge that hold λ (each analysis counts once; one per checkpoint unless a
-- checkpoint was analysed twice). Raw and centered analyses are never counted together.
-- neudep sql --file sql/queries/edge_survival.sql --param model=cnn --param lam=0.1
WITH analyses AS (
    SELECT DISTINCT dependency_run_id, checkpoint_sha256, coalesce(logit_gauge, 'raw') AS logit_gauge
    FROM dependency_runs
    WHERE model = $model AND kind = 'within' AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9
), totals AS (
    SELECT logit_gauge, count(*) AS analyses_total, count(DISTINCT checkpoint_sha256) AS checkpoints_total
    FROM analyses GROUP BY logit_gauge
)
SELECT l.logit_gauge, l.target_name, l.source_name, count(*) AS analyses_with_edge,
       any_value(t.analyses_total) AS analyses_total,
       count(DISTINCT l.checkpoint_sha256) AS checkpoints_with_edge,
       any_value(t.checkpoints_total) AS checkpoints_total,
       round(avg(l.coef), 4) AS mean_coef
FROM dependency_lineage l JOIN totals t USING (logit_gauge)
WHERE l.dependency_run_id IN (SELECT dependency_run_id FROM analyses) AND abs(l.lambda_rel - $lam) < 1e-9
GROUP BY l.logit_gauge, l.target_class, l.target_name, l.source_class, l.source_name
ORDER BY analyses_with_edge DESC, abs(mean_coef) DESC, l.logit_gauge DESC, l.target_name, l.source_name
LIMIT 20;
