-- How sparsity, error and accuracy move along the λ path, per model / pair.
SELECT kind, source_model, model, logit_gauge, lambda_rel, round(avg(n_sources), 2) AS mean_sources,
       round(100 * median(rel_err), 2) AS median_rel_err_pct, round(100 * avg(orig_acc - acc), 3) AS acc_loss_pts,
       round(100 * avg(orig_pos_acc - pos_acc), 2) AS pos_acc_loss_pts, max(kkt) AS max_kkt
FROM dependency_summary
GROUP BY ALL ORDER BY kind DESC, source_model, model, logit_gauge DESC, lambda_rel DESC;
