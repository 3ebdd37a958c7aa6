-- The result store's derived views. The base views (one per table of TABLES in
-- neudep_assets/lib/store.py) are made by neudep before and after this file: each reads only committed
-- files (store/<table>/*.parquet and store/analyses/<key>/<table>.parquet), so a new table needs no
-- line here. Parquet is the source of truth; these views only read it.

-- The current analyses of each model (within) and ordered pair (between): the ones its latest dependency
-- materialization points to (table current_analyses, written at every materialization, also when the
-- analysis was found in the store; the UI shows the same), under that model's name (a copied checkpoint
-- folder that reuses identical weights' analyses is listed under its own name), with their role: `primary`
-- (the project's config, or the Launchpad run a user chose) and, within, the other gauge's `crosscheck`.
-- A model or pair without a pointer to a committed analysis (a store written before pointers; Θ-heads)
-- falls back to its latest committed analysis per dataset, λ mode and logit gauge (role `latest`). Every
-- other analysis (an experiment with another λ grid, an older checkpoint) stays in dependency_runs and
-- dependency_lineage. "The current results" are read through this view, so a summary never mixes two
-- analyses of one model. A run without a gauge is raw.
CREATE OR REPLACE VIEW latest_dependency_runs AS
WITH analyses AS (
    SELECT dependency_run_id, any_value(kind) AS kind, any_value(source_model) AS source_model,
           any_value(model) AS model, any_value(dataset_id) AS dataset_id, any_value(lambda_mode) AS lambda_mode,
           coalesce(any_value(logit_gauge), 'raw') AS logit_gauge, max(written_at) AS written_at
    FROM dependency_runs GROUP BY dependency_run_id
), pointed AS (
    SELECT DISTINCT p.dependency_run_id, p.kind, p.source_model, p.model, p.role
    FROM current_analyses p SEMI JOIN analyses USING (dependency_run_id)
), fallback AS (
    SELECT a.dependency_run_id, a.kind, a.source_model, a.model, 'latest' AS role
    FROM analyses a ANTI JOIN pointed p ON p.kind = a.kind AND p.source_model = a.source_model AND p.model = a.model
    QUALIFY row_number() OVER (PARTITION BY a.kind, a.source_model, a.model, a.dataset_id, a.lambda_mode, a.logit_gauge
                               ORDER BY a.written_at DESC, a.dependency_run_id DESC) = 1
), cur AS (
    SELECT * FROM pointed UNION ALL SELECT * FROM fallback
)
SELECT r.* REPLACE (c.model AS model, c.source_model AS source_model, coalesce(r.logit_gauge, 'raw') AS logit_gauge),
       c.role
FROM dependency_runs r JOIN cur c USING (dependency_run_id);

-- Each current analysis at its reference λ: λ_rel = 0.1 when it holds it, else its relative λ closest to 0.1
-- (the one the UI's pictures use); `lambda_rel` says which. A model whose current analysis has another λ
-- grid keeps its row (at its own λ), never a 0 for a λ it does not hold.
CREATE OR REPLACE VIEW current_reference_runs AS
SELECT * FROM latest_dependency_runs
WHERE lambda_mode = 'relative'
QUALIFY row_number() OVER (PARTITION BY dependency_run_id, model, source_model
                           ORDER BY abs(lambda_rel - 0.1), lambda_index) = 1;

-- One row per (run, λ, target): the Table-1 metrics with model and class names.
CREATE OR REPLACE VIEW dependency_summary AS
SELECT r.kind, r.model, r.checkpoint_sha256, r.source_model, r.source_checkpoint_sha256,
       r.dataset_id AS dataset, r.fit_split, r.eval_split, r.lambda_mode, r.lambda_rel, m.lambda_abs,
       m.target_class, tc.name AS target_name, m.n_sources, m.abs_err, m.rel_err, m.acc, m.orig_acc,
       m.pos_acc, m.orig_pos_acc, m.n_pos, m.kkt, m.thm3_screened, m.thm3_violations,
       m.conj1_screened, m.conj1_violations, r.dependency_run_id, r.dagster_run_id,
       m.abs_err_refit, m.rel_err_refit, m.acc_refit, m.pos_acc_refit, m.fit_err, m.fit_err_refit, m.unexplained_share,
       coalesce(r.logit_gauge, 'raw') AS logit_gauge, m.offset_dir_share
FROM dependency_metrics m
JOIN dependency_runs r USING (dependency_run_id, lambda_index)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = m.target_class;

-- dependency_summary of the current analyses only, under each current model's name, with their role.
CREATE OR REPLACE VIEW current_dependency_summary AS
SELECT s.* REPLACE (c.model AS model, c.source_model AS source_model), c.role
FROM dependency_summary s
JOIN (SELECT DISTINCT dependency_run_id, model, source_model, role FROM latest_dependency_runs) c
    USING (dependency_run_id);

-- One row per dependency edge: which checkpoint, dataset and λ produced it.
CREATE OR REPLACE VIEW dependency_lineage AS
SELECT r.kind, r.model, r.checkpoint_sha256, r.dataset_id AS dataset, r.fit_split, r.eval_split,
       r.lambda_mode, r.lambda_rel, m.lambda_abs, d.target_class, tc.name AS target_name,
       r.source_model, r.source_checkpoint_sha256, d.source_class, sc.name AS source_name, d.coef,
       m.rel_err, m.pos_acc, m.orig_pos_acc, r.solver, m.kkt, r.dependency_run_id, r.dagster_run_id,
       r.code_version, coalesce(r.logit_gauge, 'raw') AS logit_gauge, m.offset_dir_share
FROM dependencies d
JOIN dependency_runs r USING (dependency_run_id, lambda_index)
JOIN dependency_metrics m USING (dependency_run_id, lambda_index, target_class)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = d.target_class
LEFT JOIN classes sc ON sc.dataset_id = r.dataset_id AND sc.class_index = d.source_class;

-- The current version of each model: the checkpoint its current (primary) within analysis is of, else its
-- newest analysed checkpoint; and every edge of the current analyses of that version (between pairs: both
-- sides current), under the current model names, with their role. Older versions stay in
-- `dependency_lineage`; sql/queries/checkpoint_diff.sql compares two of them.
CREATE OR REPLACE VIEW checkpoints_current AS
WITH pointed AS (
    SELECT model, any_value(checkpoint_sha256) AS checkpoint_sha256, max(written_at) AS written_at
    FROM latest_dependency_runs WHERE kind = 'within' AND role = 'primary' GROUP BY model
)
SELECT * FROM pointed
UNION ALL
SELECT model, arg_max(checkpoint_sha256, written_at) AS checkpoint_sha256, max(written_at) AS written_at
FROM checkpoints
WHERE checkpoint_sha256 IN (SELECT checkpoint_sha256 FROM dependency_runs)
  AND model NOT IN (SELECT model FROM pointed)
GROUP BY model;

CREATE OR REPLACE VIEW dependencies_current AS
SELECT l.* REPLACE (c.model AS model, c.source_model AS source_model), c.role
FROM dependency_lineage l
JOIN (SELECT DISTINCT dependency_run_id, model, source_model, role FROM latest_dependency_runs) c
    USING (dependency_run_id)
JOIN checkpoints_current t ON t.model = c.model AND t.checkpoint_sha256 = l.checkpoint_sha256
JOIN checkpoints_current s ON s.model = c.source_model AND s.checkpoint_sha256 = l.source_checkpoint_sha256;

-- The exact path of each target (when the analysis kept it: dependencies.store_path), one row per knot and
-- source with the analysis's lineage: knots are λ_max (no source), every λ where the active set changes, and
-- the smallest λ of the grid; between two knots of a target the coefficients are linear in λ and the fit error
-- err(u) = (1 − u)·err_a + u·err_b − u(1 − u)·seg_curv (u from 0 at knot a to 1 at the next knot).
-- lib/covlasso/path.py reads it back in Python; sql/queries/sparsest_dependency.sql solves on it in SQL.
CREATE OR REPLACE VIEW dependency_path_knots_lineage AS
WITH runs AS (
    SELECT dependency_run_id, any_value(kind) AS kind, any_value(model) AS model,
           any_value(checkpoint_sha256) AS checkpoint_sha256, any_value(source_model) AS source_model,
           any_value(source_checkpoint_sha256) AS source_checkpoint_sha256, any_value(dataset_id) AS dataset_id,
           any_value(fit_split) AS fit_split, coalesce(any_value(logit_gauge), 'raw') AS logit_gauge
    FROM dependency_runs GROUP BY dependency_run_id
)
SELECT r.kind, r.model, r.checkpoint_sha256, r.source_model, r.source_checkpoint_sha256, r.dataset_id AS dataset,
       r.fit_split, r.logit_gauge, k.target_class, tc.name AS target_name, k.knot, k.lambda_abs, k.lambda_rel,
       k.n_sources, k.fit_err, k.unexplained_share, k.seg_curv, k.exact, p.source_class, sc.name AS source_name, p.coef,
       k.dependency_run_id
FROM dependency_path_knots k
JOIN runs r USING (dependency_run_id)
LEFT JOIN dependency_path p USING (dependency_run_id, target_class, knot)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = k.target_class
LEFT JOIN classes sc ON sc.dataset_id = r.dataset_id AND sc.class_index = p.source_class;
