-- The sparsest dependency of each class of $model: the fewest sources whose error is at most $at_most, ties
-- broken by the largest λ (the lasso's support is not monotone in λ: a knot further down the path can have
-- fewer sources). $bound says which error, and every row says which it used:
--   'unexplained_share': err/E[y²] on the fit split (a squared ratio), anywhere on the exact path each analysis
--       stored (dependency_path_knots, dependencies.store_path): the knots within $at_most, and the point where
--       the path first reaches $at_most (the root of its segment's quadratic; there the support is the
--       segment's, which contains both knots'). lib/covlasso/path.py `sparsest_within` gives the same.
--   'rel_err': Table 1's Rel Err, mean|e| / mean|y| on the eval split, known only on the analysis's λ grid
--       (dependency_metrics); lib/covlasso/path.py `sparsest_on_grid` gives the same.
-- One row per analysis (within, and between with $model as the target; each checkpoint and gauge) and class;
-- classes that never get within $at_most have no row.
-- neudep sql --file sql/queries/sparsest_dependency.sql --param model=cnn --param bound=rel_err --param at_most=0.2
WITH x AS (
    SELECT CASE WHEN CAST($bound AS VARCHAR) NOT IN ('unexplained_share', 'rel_err')
                THEN error('bound must be unexplained_share or rel_err, got ' || CAST($bound AS VARCHAR))
                WHEN m > 0 AND m <= 1 THEN m
                ELSE error('at_most (the largest ' || CAST($bound AS VARCHAR) || ') must lie in (0, 1], got '
                           || CAST($at_most AS VARCHAR)) END AS x,
           CAST($bound AS VARCHAR) AS bound
    FROM (SELECT TRY_CAST($at_most AS DOUBLE) AS m)
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
    WHERE (SELECT bound FROM x) = 'unexplained_share'
    WINDOW w AS (PARTITION BY dependency_run_id, target_class ORDER BY knot)
), seg AS (  -- the first segment whose lower end is within x; the root u ∈ [0, 1] of its quadratic
    SELECT k.*, fit_err - x * s AS c, err_b - fit_err - seg_curv AS b_
    FROM k, x WHERE err_b <= x * s
    QUALIFY row_number() OVER (PARTITION BY dependency_run_id, target_class ORDER BY knot) = 1
), root AS (
    SELECT *, CASE WHEN c <= 0 THEN 0.0 ELSE least(1.0, 2 * c / (-b_ + sqrt(greatest(b_ * b_ - 4 * seg_curv * c, 0))))
              END AS u
    FROM seg
), cand AS (  -- the root, and every knot within x (u = 0, knot_b = knot)
    SELECT dependency_run_id, target_class, knot, knot_b, u, lambda_abs - u * (lambda_abs - lambda_b) AS lambda_abs,
           lambda_max, ((1 - u) * fit_err + u * err_b - u * (1 - u) * seg_curv) / s AS unexplained_share,
           NULL::INTEGER AS n_sources, exact
    FROM root
    UNION ALL
    SELECT dependency_run_id, target_class, knot, knot, 0.0, lambda_abs, lambda_max, fit_err / s, n_sources, exact
    FROM k, x WHERE fit_err <= x * s
), cand_coefs AS (
    SELECT c.dependency_run_id, c.target_class, c.knot, c.knot_b, d.source_class,
           sum(CASE WHEN d.knot = c.knot THEN 1 - c.u ELSE 0 END * d.coef
               + CASE WHEN d.knot = c.knot_b AND c.knot_b <> c.knot THEN c.u ELSE 0 END * d.coef) AS coef
    FROM cand c JOIN dependency_path d ON d.dependency_run_id = c.dependency_run_id
         AND d.target_class = c.target_class AND d.knot IN (c.knot, c.knot_b)
    GROUP BY ALL
), cand_n AS (
    SELECT c.* REPLACE (coalesce(c.n_sources, (SELECT count(*) FROM cand_coefs cc
           WHERE cc.dependency_run_id = c.dependency_run_id AND cc.target_class = c.target_class AND cc.knot = c.knot
             AND cc.knot_b = c.knot_b AND cc.coef <> 0)) AS n_sources)
    FROM cand c
), path_pick AS (
    SELECT dependency_run_id, target_class, knot, knot_b, lambda_abs, lambda_abs / lambda_max AS lambda_rel,
           unexplained_share, NULL::DOUBLE AS rel_err, NULL::BIGINT AS lambda_index, exact, n_sources
    FROM cand_n
    QUALIFY row_number() OVER (PARTITION BY dependency_run_id, target_class ORDER BY n_sources, lambda_abs DESC) = 1
), grid_pick AS (
    SELECT m.dependency_run_id, m.target_class, NULL::BIGINT AS knot, NULL::BIGINT AS knot_b, m.lambda_abs,
           m.lambda_abs / nullif(m.lambda_max, 0) AS lambda_rel, m.unexplained_share, m.rel_err, m.lambda_index,
           NULL::BOOLEAN AS exact, m.n_sources
    FROM dependency_metrics m SEMI JOIN runs USING (dependency_run_id), x
    WHERE x.bound = 'rel_err' AND m.rel_err <= x.x
    QUALIFY row_number() OVER (PARTITION BY m.dependency_run_id, m.target_class
                               ORDER BY m.n_sources, m.lambda_abs DESC) = 1
), picks AS (
    SELECT * FROM path_pick UNION ALL SELECT * FROM grid_pick
), coefs AS (
    SELECT p.dependency_run_id, p.target_class, cc.source_class, cc.coef
    FROM picks p JOIN cand_coefs cc ON cc.dependency_run_id = p.dependency_run_id AND cc.target_class = p.target_class
         AND cc.knot = p.knot AND cc.knot_b = p.knot_b AND cc.coef <> 0
    UNION ALL
    SELECT p.dependency_run_id, p.target_class, d.source_class, d.coef
    FROM picks p JOIN dependencies d ON d.dependency_run_id = p.dependency_run_id AND d.target_class = p.target_class
         AND d.lambda_index = p.lambda_index
)
SELECT r.kind, r.source_model, r.model, left(r.checkpoint_sha256, 12) AS checkpoint, r.logit_gauge, p.target_class,
       tc.name AS target_name, (SELECT bound FROM x) AS bound, p.lambda_abs, p.lambda_rel, p.unexplained_share,
       p.rel_err, p.n_sources,
       (SELECT string_agg(printf('%+.3f·%s', c.coef, coalesce(sc.name, CAST(c.source_class AS VARCHAR))), ' '
                          ORDER BY abs(c.coef) DESC)
        FROM coefs c LEFT JOIN classes sc ON sc.dataset_id = r.dataset_id AND sc.class_index = c.source_class
        WHERE c.dependency_run_id = p.dependency_run_id AND c.target_class = p.target_class) AS dependency,
       p.exact, p.dependency_run_id
FROM picks p JOIN runs r USING (dependency_run_id)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = p.target_class
ORDER BY r.kind DESC, r.source_model, checkpoint, r.logit_gauge DESC, p.target_class;
