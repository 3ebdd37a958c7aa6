-- Table 3 of the paper for one parent model ($parent; its latest checkpoint): per cut pair and role
-- (control: α = 0, regularized: α > 0), mean ± std over seeds of the val accuracy, the OOD AUPR (ood
-- split positive, score −max softmax) and the pair's coefficient at λ in each child's own within
-- analysis (a → b: target a, source b; no edge = 0), beside the parent's.
--   neudep sql --file sql/queries/regularization_table3.sql --param parent=cnn
WITH latest AS (
    SELECT parent_sha256 FROM regularization_results WHERE parent_model = $parent
    ORDER BY written_at DESC LIMIT 1
), per_seed AS (
    SELECT r.parent_model, r.role, r.seed, r.alpha, p.pair_index, p.name_a || '  ~  ' || p.name_b AS pair,
           p.coef AS parent_coef, r.accuracy, r.ood_aupr, coalesce(ab.coef, 0) AS coef_ab,
           coalesce(ba.coef, 0) AS coef_ba, r.lambda_rel, r.logit_gauge
    FROM regularization_results r
    JOIN latest USING (parent_sha256)
    JOIN regularization_pairs p ON p.model = r.parent_model AND p.parent_sha256 = r.parent_sha256
    JOIN dependency_runs d ON d.dependency_run_id = r.dependency_run_id AND abs(d.lambda_rel - r.lambda_rel) < 1e-9
    LEFT JOIN dependencies ab ON ab.dependency_run_id = r.dependency_run_id AND ab.lambda_index = d.lambda_index
         AND ab.target_class = p.class_a AND ab.source_class = p.class_b
    LEFT JOIN dependencies ba ON ba.dependency_run_id = r.dependency_run_id AND ba.lambda_index = d.lambda_index
         AND ba.target_class = p.class_b AND ba.source_class = p.class_a
    WHERE r.parent_model = $parent
)
SELECT parent_model, pair, role, max(alpha) AS alpha, count(*) AS seeds,
       round(avg(accuracy), 4) AS acc, round(coalesce(stddev_samp(accuracy), 0), 4) AS acc_std,
       round(avg(coef_ab), 4) AS coef_ab, round(coalesce(stddev_samp(coef_ab), 0), 4) AS coef_ab_std,
       round(avg(coef_ba), 4) AS coef_ba, round(coalesce(stddev_samp(coef_ba), 0), 4) AS coef_ba_std,
       round(any_value(parent_coef), 4) AS parent_coef,
       round(avg(ood_aupr), 4) AS ood_aupr, round(coalesce(stddev_samp(ood_aupr), 0), 4) AS ood_aupr_std,
       any_value(lambda_rel) AS lambda_rel, any_value(logit_gauge) AS logit_gauge
FROM per_seed
GROUP BY parent_model, pair_index, pair, role
ORDER BY pair_index, role;
