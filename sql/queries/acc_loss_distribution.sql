-- The current analyses (latest_dependency_runs) of each model and pair in each logit gauge: for the
-- targets with a dependency at λ_rel = 0.1 (1..10 sources, Rel Err ≤ 20%), the distribution of the
-- overall Acc loss and of the Pos Acc loss (the target's own recall), in points. One row per analysis
-- (raw and centered never mixed).
SELECT kind, source_model, model, logit_gauge, count(*) AS targets,
       list_transform(quantile_cont(orig_acc - acc, [0, 0.25, 0.5, 0.75, 1]), lambda x: round(100 * x, 2)) AS acc_loss_pts_q0_25_50_75_100,
       list_transform(quantile_cont(orig_pos_acc - pos_acc, [0, 0.25, 0.5, 0.75, 1]), lambda x: round(100 * x)) AS pos_acc_loss_pts_q0_25_50_75_100,
       dependency_run_id
FROM current_dependency_summary
WHERE lambda_mode = 'relative' AND abs(lambda_rel - 0.1) < 1e-9 AND n_sources BETWEEN 1 AND 10 AND rel_err <= 0.2
GROUP BY kind, source_model, model, logit_gauge, dependency_run_id
ORDER BY kind DESC, source_model, model, logit_gauge DESC;
