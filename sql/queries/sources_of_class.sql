-- Which classes does a target depend on, in one model, at one λ, in every analysis (checkpoint, logit
-- gauge) of that model?
-- neudep sql --file sql/queries/sources_of_class.sql --param model=cnn --param target='%small letter a' --param lam=0.1
SELECT model, left(checkpoint_sha256, 12) AS checkpoint, logit_gauge, lambda_rel, target_name, source_model,
       source_name, round(coef, 4) AS coef, round(100 * rel_err, 1) AS rel_err_pct, dependency_run_id, dagster_run_id
FROM dependency_lineage
WHERE model = $model AND target_name ILIKE $target AND abs(lambda_rel - $lam) < 1e-9
ORDER BY checkpoint, logit_gauge DESC, dependency_run_id, abs(coef) DESC;
