-- The five best-reconstructed targets (≤ 10 sources) of the current within-model analyses (of each model
-- and logit gauge) at λ_rel = 0.1 (or an analysis's λ closest to it: `lambda_rel`), each written as "target ≈ coef·source + ..." (the five largest terms),
-- with its logit gauge and the share of the reconstruction along the all-ones (offset) direction (≈ 1: it
-- reproduces the common offset).
WITH best AS (
    SELECT dependency_run_id, model, logit_gauge, lambda_rel, target_class, target_name, n_sources, rel_err, pos_acc,
           orig_pos_acc, offset_dir_share
    FROM current_dependency_summary
    SEMI JOIN current_reference_runs USING (dependency_run_id, model, source_model, lambda_rel)
    WHERE kind = 'within' AND n_sources BETWEEN 1 AND 10
    ORDER BY rel_err, model, target_class LIMIT 5
), terms AS (
    SELECT l.dependency_run_id, l.target_class, l.coef, l.source_name,
           row_number() OVER (PARTITION BY l.dependency_run_id, l.target_class ORDER BY abs(l.coef) DESC) AS k
    FROM dependency_lineage l JOIN best b USING (dependency_run_id, target_class)
    WHERE abs(l.lambda_rel - b.lambda_rel) < 1e-12
)
SELECT b.model, b.logit_gauge AS gauge, b.lambda_rel, b.target_name AS target, b.n_sources AS sources, round(100 * b.rel_err, 1) AS rel_err_pct,
       round(100 * b.pos_acc) AS pos_acc, round(100 * b.orig_pos_acc) AS orig_pos_acc,
       round(b.offset_dir_share, 2) AS offset_dir,
       (SELECT string_agg(printf('%+.2f·%s', t.coef, t.source_name), ' ' ORDER BY t.k) FROM terms t
         WHERE t.dependency_run_id = b.dependency_run_id AND t.target_class = b.target_class AND t.k <= 5)
           || CASE WHEN b.n_sources > 5 THEN ' …' ELSE '' END AS reconstruction
FROM best b
ORDER BY b.rel_err;
