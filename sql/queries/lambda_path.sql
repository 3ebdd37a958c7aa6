-- How sparsity, error and accuracy move along the λ path: the current analyses (latest_dependency_runs)
-- of each model and pair in each logit gauge, one row per analysis and λ.
SELECT kind, source_model, model, logit_gauge, lambda_rel, round(avg(n_sources), 2) AS mean_sources,
       round(100 * median(rel_err), 2) AS median_rel_err_pct, round(100 * avg(orig_acc - acc), 3) AS acc_loss_pts,
       round(100 * avg(orig_pos_acc - pos_acc), 2) AS pos_acc_loss_pts, max(kkt) AS max_kkt, dependency_run_id
FROM current_dependency_summary
WHERE kind IN ('within', 'between')  -- not a Θ-head (§3.2), which has no λ path
GROUP BY kind, source_model, model, logit_gauge, lambda_rel, dependency_run_id
ORDER BY kind DESC, source_model, model, logit_gauge DESC, lambda_rel DESC;
