-- The five best-reconstructed targets (≤ 10 sources) per within-model analysis at λ_rel = 0.1,
-- each written as "target ≈ coef·source + ...".
WITH best AS (
    SELECT dependency_run_id, model, target_class, target_name, n_sources, rel_err, pos_acc, orig_pos_acc,
           row_number() OVER (PARTITION BY model ORDER BY rel_err) AS rk
    FROM dependency_summary
    WHERE kind = 'within' AND abs(lambda_rel - 0.1) < 1e-9 AND n_sources BETWEEN 1 AND 10
)
SELECT b.model, b.target_name AS target, round(100 * b.rel_err, 1) AS rel_err_pct,
       round(100 * b.pos_acc, 1) AS pos_acc, round(100 * b.orig_pos_acc, 1) AS orig_pos_acc,
       string_agg(printf('%+.3f·%s', l.coef, l.source_name), ' ' ORDER BY abs(l.coef) DESC) AS reconstruction
FROM best b JOIN dependency_lineage l
  ON l.dependency_run_id = b.dependency_run_id AND l.target_class = b.target_class
 AND abs(l.lambda_rel - 0.1) < 1e-9
WHERE b.rk <= 5
GROUP BY ALL ORDER BY b.model, rel_err_pct;
