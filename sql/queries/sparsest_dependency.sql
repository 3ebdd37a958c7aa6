-- The sparsest dependency of each class of $model with fit-split Rel Err err/E[y²] ≤ $max_err, from the exact
-- path each analysis stored (dependency_path_knots, dependencies.store_path): the largest λ at which the fit Rel
-- Err reaches $max_err, solved exactly on its segment (the error is a quadratic in λ there, non-increasing as λ
-- falls), and the coefficients there (linear between the segment's two knots). One row per analysis (within,
-- and between with $model as the target; each checkpoint and gauge) and class; classes whose stored path never
-- reaches $max_err have no row. lib/covlasso/path.py `sparsest_within` gives the same in Python.
-- neudep sql --file sql/queries/sparsest_dependency.sql --param model=cnn --param max_err=0.2
WITH x AS (
    SELECT CASE WHEN m > 0 AND m <= 1 THEN m
                ELSE error('max_err (the largest fit Rel Err) must lie in (0, 1], got ' || CAST($max_err AS VARCHAR)) END AS x
    FROM (SELECT TRY_CAST($max_err AS DOUBLE) AS m)
), runs AS (
    SELECT dependency_run_id, any_value(kind) AS kind, any_value(model) AS model, any_value(source_model) AS source_model,
           any_value(checkpoint_sha256) AS checkpoint_sha256, any_value(dataset_id) AS dataset_id,
           coalesce(any_value(logit_gauge), 'raw') AS logit_gauge
    FROM dependency_runs GROUP BY dependency_run_id HAVING any_value(model) = $model
), k AS (
    SELECT k.*, coalesce(lead(knot) OVER w, knot) AS knot_b, coalesce(lead(lambda_abs) OVER w, lambda_abs) AS lambda_b,
           coalesce(lead(fit_err) OVER w, fit_err) AS err_b, first_value(fit_err) OVER w AS s,  -- knot 0: t = 0
           first_value(lambda_abs) OVER w AS lambda_max
    FROM dependency_path_knots k SEMI JOIN runs USING (dependency_run_id)
    WINDOW w AS (PARTITION BY dependency_run_id, target_class ORDER BY knot)
), seg AS (  -- the first segment whose lower end is within x; the root u ∈ [0, 1] of its quadratic
    SELECT k.*, fit_err - x * s AS c, err_b - fit_err - seg_curv AS b_
    FROM k, x WHERE err_b <= x * s
    QUALIFY row_number() OVER (PARTITION BY dependency_run_id, target_class ORDER BY knot) = 1
), pick AS (
    SELECT *, CASE WHEN c <= 0 THEN 0.0 ELSE least(1.0, 2 * c / (-b_ + sqrt(greatest(b_ * b_ - 4 * seg_curv * c, 0))))
              END AS u
    FROM seg
), coefs AS (
    SELECT p.dependency_run_id, p.target_class, d.source_class,
           sum(CASE WHEN d.knot = p.knot THEN 1 - p.u ELSE 0 END * d.coef
               + CASE WHEN d.knot = p.knot_b THEN p.u ELSE 0 END * d.coef) AS coef
    FROM pick p JOIN dependency_path d ON d.dependency_run_id = p.dependency_run_id
         AND d.target_class = p.target_class AND d.knot IN (p.knot, p.knot_b)
    GROUP BY ALL HAVING sum(CASE WHEN d.knot = p.knot THEN 1 - p.u ELSE 0 END * d.coef
                            + CASE WHEN d.knot = p.knot_b THEN p.u ELSE 0 END * d.coef) <> 0
)
SELECT r.kind, r.source_model, r.model, left(r.checkpoint_sha256, 12) AS checkpoint, r.logit_gauge, p.target_class,
       tc.name AS target_name, p.lambda_abs - p.u * (p.lambda_abs - p.lambda_b) AS lambda_abs,
       (p.lambda_abs - p.u * (p.lambda_abs - p.lambda_b)) / p.lambda_max AS lambda_rel,
       ((1 - p.u) * p.fit_err + p.u * p.err_b - p.u * (1 - p.u) * p.seg_curv) / p.s AS fit_rel_err,
       (SELECT count(*) FROM coefs c WHERE c.dependency_run_id = p.dependency_run_id
         AND c.target_class = p.target_class) AS n_sources,
       (SELECT string_agg(printf('%+.3f·%s', c.coef, coalesce(sc.name, CAST(c.source_class AS VARCHAR))), ' '
                          ORDER BY abs(c.coef) DESC)
        FROM coefs c LEFT JOIN classes sc ON sc.dataset_id = r.dataset_id AND sc.class_index = c.source_class
        WHERE c.dependency_run_id = p.dependency_run_id AND c.target_class = p.target_class) AS dependency,
       p.exact, p.dependency_run_id
FROM pick p JOIN runs r USING (dependency_run_id)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = p.target_class
ORDER BY r.kind DESC, r.source_model, checkpoint, r.logit_gauge DESC, p.target_class;
