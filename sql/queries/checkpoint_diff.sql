-- What changed between two checkpoint versions of a model (within-model edges at λ_rel = $lam, in the
-- logit gauge $gauge: raw or centered): edges gained, edges lost, and coefficients that moved by more
-- than $threshold. Each version is read from one analysis: its latest in that gauge holding λ_rel = $lam.
-- $old / $new: checkpoint sha256 prefixes (`SELECT model, checkpoint_sha256, written_at FROM checkpoints`).
-- neudep sql --file sql/queries/checkpoint_diff.sql --param model=mine --param old=3f2a91 --param new=9c1d07 --param lam=0.1 --param gauge=raw --param threshold=0.05
WITH runs AS (
    SELECT dependency_run_id, checkpoint_sha256, max(written_at) AS written_at
    FROM dependency_runs
    WHERE model = $model AND kind = 'within' AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9
      AND coalesce(logit_gauge, 'raw') = $gauge
      AND (starts_with(checkpoint_sha256, $old) OR starts_with(checkpoint_sha256, $new))
    GROUP BY dependency_run_id, checkpoint_sha256
    QUALIFY row_number() OVER (PARTITION BY checkpoint_sha256 ORDER BY max(written_at) DESC, dependency_run_id DESC) = 1
), e AS (
    SELECT starts_with(checkpoint_sha256, $old) AS is_old, target_class, target_name, source_class, source_name, coef
    FROM dependency_lineage SEMI JOIN runs USING (dependency_run_id)
    WHERE abs(lambda_rel - $lam) < 1e-9
), o AS (SELECT * FROM e WHERE is_old), n AS (SELECT * FROM e WHERE NOT is_old)
SELECT CASE WHEN o.coef IS NULL THEN 'gained' WHEN n.coef IS NULL THEN 'lost' ELSE 'moved' END AS change,
       target_class, coalesce(n.target_name, o.target_name) AS target_name,
       source_class, coalesce(n.source_name, o.source_name) AS source_name,
       o.coef AS old_coef, n.coef AS new_coef, coalesce(n.coef, 0) - coalesce(o.coef, 0) AS delta
FROM o FULL OUTER JOIN n USING (target_class, source_class)
WHERE o.coef IS NULL OR n.coef IS NULL OR abs(n.coef - o.coef) > $threshold
ORDER BY change, abs(delta) DESC, target_class, source_class;
