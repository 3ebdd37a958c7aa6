-- Did an edge survive a new checkpoint? Every within-model edge at λ, counted over the analyses of the
-- model that hold λ (each analysis counts once; one per checkpoint unless a checkpoint was analysed twice).
-- neudep sql --file sql/queries/edge_survival.sql --param model=cnn --param lam=0.1
WITH analyses AS (
    SELECT DISTINCT dependency_run_id, checkpoint_sha256 FROM dependency_runs
    WHERE model = $model AND kind = 'within' AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9
)
SELECT target_name, source_name, count(*) AS analyses_with_edge, (SELECT count(*) FROM analyses) AS analyses_total,
       count(DISTINCT checkpoint_sha256) AS checkpoints_with_edge,
       (SELECT count(DISTINCT checkpoint_sha256) FROM analyses) AS checkpoints_total,
       round(avg(coef), 4) AS mean_coef
FROM dependency_lineage
WHERE dependency_run_id IN (SELECT dependency_run_id FROM analyses) AND abs(lambda_rel - $lam) < 1e-9
GROUP BY target_class, target_name, source_class, source_name
ORDER BY analyses_with_edge DESC, abs(mean_coef) DESC, target_name, source_name
LIMIT 20;
