-- The sparsest dependency of each class of $model (within), in each analysis (checkpoint, gauge), on the λ grid whose fit-split relative error
-- err/E[y²] (fit_rel_err) is ≤ $max_err: fewest sources, then the largest λ. Grid points only: the exact
-- path between them is not stored.
-- neudep sql --file sql/queries/sparsest_dependency.sql --param model=cnn --param max_err=0.2
SELECT model, left(checkpoint_sha256, 12) AS checkpoint, logit_gauge, target_class, target_name, lambda_rel, n_sources,
       round(fit_rel_err, 4) AS fit_rel_err, round(rel_err, 4) AS rel_err, round(rel_err_refit, 4) AS rel_err_refit,
       dependency_run_id
FROM dependency_summary
WHERE kind = 'within' AND model = $model AND n_sources >= 1 AND fit_rel_err <= $max_err
QUALIFY row_number() OVER (PARTITION BY dependency_run_id, target_class
                           ORDER BY n_sources, lambda_rel DESC) = 1
ORDER BY checkpoint, logit_gauge DESC, target_class;
