-- The current analyses of each model and pair (latest_dependency_runs: the project's, or the run a user
-- chose, and the other gauge's cross-check; raw is the paper's gauge, centered removes each sample's mean
-- logit), at λ_rel = 0.1 (or, for an analysis without it, at its λ closest to 0.1: `lambda_rel` says): how
-- many targets have a dependency of ≤ 10 sources with
-- Rel Err ≤ 20%, what reconstructing them costs in accuracy, and how much of their reconstruction lies
-- along the all-ones (offset) direction. One row per analysis (dependency_run_id): a number never mixes
-- two analyses, nor two gauges.
SELECT kind, source_model, model, left(checkpoint_sha256, 12) AS checkpoint, logit_gauge, role, lambda_rel,
       count(*) AS targets,
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
FROM current_dependency_summary
SEMI JOIN current_reference_runs USING (dependency_run_id, model, source_model, lambda_rel)
WHERE lambda_mode = 'relative'
GROUP BY kind, source_model, model, checkpoint, logit_gauge, role, lambda_rel, dependency_run_id
ORDER BY kind DESC, source_model, model, logit_gauge DESC;
