-- The latest analysis of each model and pair in each logit gauge (raw, the paper's; centered: each
-- sample's mean logit removed), at λ_rel = 0.1: how many targets have a dependency of ≤ 10 sources with
-- Rel Err ≤ 20%, what reconstructing them costs in accuracy, and how much of their reconstruction lies
-- along the all-ones (offset) direction. One row per analysis (dependency_run_id): a number never mixes
-- two analyses, nor two gauges.
SELECT kind, source_model, model, left(checkpoint_sha256, 12) AS checkpoint, logit_gauge, count(*) AS targets,
       count(*) FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2) AS with_dependency,
       round(100.0 * with_dependency / targets, 1) AS share_pct,
       round(median(n_sources), 1) AS median_sources,
       round(100 * median(rel_err), 1) AS median_rel_err_pct,
       round(100 * avg(orig_acc - acc), 3) AS mean_acc_loss_pts,
       round(100 * median(orig_pos_acc - pos_acc) FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2), 1)
           AS median_pos_acc_loss_pts,
       round(median(offset_dir_share) FILTER (WHERE n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2), 2)
           AS median_offset_dir_share,
       dependency_run_id
FROM dependency_summary
WHERE dependency_run_id IN (SELECT dependency_run_id FROM latest_dependency_runs)
  AND lambda_mode = 'relative' AND abs(lambda_rel - 0.1) < 1e-9
GROUP BY kind, source_model, model, checkpoint, logit_gauge, dependency_run_id
ORDER BY kind DESC, source_model, model, logit_gauge DESC;
