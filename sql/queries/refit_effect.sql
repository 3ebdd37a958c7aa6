-- Shrinkage or support? The current analyses of each model and pair in each gauge, at λ_rel = $lam: the
-- Table-1 numbers of the lasso beside those of the relaxed refit (least squares on the lasso's support,
-- fit on the fit split). One row per analysis.
-- neudep sql --file sql/queries/refit_effect.sql --param lam=0.1
SELECT kind, source_model, model, left(checkpoint_sha256, 12) AS checkpoint, logit_gauge, count(*) AS targets,
       round(100.0 * count(*) FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2) / count(*), 1)
           AS share_pct,
       round(100.0 * count(*) FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err_refit <= 0.2) / count(*), 1)
           AS share_refit_pct,
       round(100 * median(rel_err), 1) AS median_rel_err_pct,
       round(100 * median(rel_err_refit), 1) AS median_rel_err_refit_pct,
       round(100 * median(orig_pos_acc - pos_acc) FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2), 1)
           AS median_pos_acc_loss_pts,
       round(100 * median(orig_pos_acc - pos_acc_refit)
                 FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err_refit <= 0.2), 1)
           AS median_pos_acc_loss_refit_pts,
       dependency_run_id
FROM current_dependency_summary
WHERE lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9
GROUP BY kind, source_model, model, checkpoint, logit_gauge, dependency_run_id
ORDER BY kind DESC, source_model, model, logit_gauge DESC;
