-- Did an edge survive a new checkpoint? Every within-model edge at λ with the checkpoints that have it.
-- neudep sql --file sql/queries/edge_survival.sql --param model=cnn --param lam=0.1
SELECT logit_gauge, target_name, source_name, count(DISTINCT checkpoint_sha256) AS checkpoints_with_edge,
       (SELECT count(DISTINCT checkpoint_sha256) FROM dependency_runs r
         WHERE r.model = $model AND r.kind = 'within'
           AND coalesce(r.logit_gauge, 'raw') = dependency_lineage.logit_gauge) AS checkpoints_total,
       round(avg(coef), 4) AS mean_coef
FROM dependency_lineage
WHERE model = $model AND kind = 'within' AND abs(lambda_rel - $lam) < 1e-9
GROUP BY ALL ORDER BY checkpoints_with_edge DESC, abs(mean_coef) DESC
LIMIT 20;
