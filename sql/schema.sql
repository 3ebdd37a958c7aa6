-- The result store's catalog: views over the Parquet files under {{STORE}} (substituted with the
-- store path when neudep creates data/neudep.duckdb). Parquet is the source of truth; these views
-- only read it, so queries see new results as soon as a run has written them.

CREATE OR REPLACE VIEW datasets           AS SELECT * FROM read_parquet('{{STORE}}/datasets/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW classes            AS SELECT * FROM read_parquet('{{STORE}}/classes/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW checkpoints        AS SELECT * FROM read_parquet('{{STORE}}/checkpoints/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW logit_sets         AS SELECT * FROM read_parquet('{{STORE}}/logit_sets/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW moments            AS SELECT * FROM read_parquet('{{STORE}}/moments/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW dependency_runs    AS SELECT * FROM read_parquet('{{STORE}}/dependency_runs/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW dependencies       AS SELECT * FROM read_parquet('{{STORE}}/dependencies/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW dependency_metrics AS SELECT * FROM read_parquet('{{STORE}}/dependency_metrics/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW class_diagnostics  AS SELECT * FROM read_parquet('{{STORE}}/class_diagnostics/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW comparisons        AS SELECT * FROM read_parquet('{{STORE}}/comparisons/*.parquet', union_by_name = true);

-- One row per (run, λ, target): the Table-1 metrics with model and class names.
CREATE OR REPLACE VIEW dependency_summary AS
SELECT r.kind, r.model, r.checkpoint_sha256, r.source_model, r.source_checkpoint_sha256,
       r.dataset_id AS dataset, r.fit_split, r.eval_split, r.lambda_mode, r.lambda_rel, m.lambda_abs,
       m.target_class, tc.name AS target_name, m.n_sources, m.abs_err, m.rel_err, m.acc, m.orig_acc,
       m.pos_acc, m.orig_pos_acc, m.n_pos, m.kkt, m.thm3_screened, m.thm3_violations,
       m.conj1_screened, m.conj1_violations, r.dependency_run_id, r.dagster_run_id
FROM dependency_metrics m
JOIN dependency_runs r USING (dependency_run_id, lambda_index)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = m.target_class;

-- One row per dependency edge: which checkpoint, dataset and λ produced it.
CREATE OR REPLACE VIEW dependency_lineage AS
SELECT r.kind, r.model, r.checkpoint_sha256, r.dataset_id AS dataset, r.fit_split, r.eval_split,
       r.lambda_mode, r.lambda_rel, m.lambda_abs, d.target_class, tc.name AS target_name,
       r.source_model, r.source_checkpoint_sha256, d.source_class, sc.name AS source_name, d.coef,
       m.rel_err, m.pos_acc, m.orig_pos_acc, r.solver, m.kkt, r.dependency_run_id, r.dagster_run_id,
       r.code_version
FROM dependencies d
JOIN dependency_runs r USING (dependency_run_id, lambda_index)
JOIN dependency_metrics m USING (dependency_run_id, lambda_index, target_class)
LEFT JOIN classes tc ON tc.dataset_id = r.dataset_id AND tc.class_index = d.target_class
LEFT JOIN classes sc ON sc.dataset_id = r.dataset_id AND sc.class_index = d.source_class;

-- The current version of each model: its latest analysed checkpoint (the newest `checkpoints` row
-- that has a dependency run), and every edge of that version (between pairs: both sides current).
-- Older versions stay in `dependency_lineage`; sql/queries/checkpoint_diff.sql compares two of them.
CREATE OR REPLACE VIEW checkpoints_current AS
SELECT model, arg_max(checkpoint_sha256, written_at) AS checkpoint_sha256, max(written_at) AS written_at
FROM checkpoints
WHERE checkpoint_sha256 IN (SELECT checkpoint_sha256 FROM dependency_runs)
GROUP BY model;

CREATE OR REPLACE VIEW dependencies_current AS
SELECT l.*
FROM dependency_lineage l
JOIN checkpoints_current t ON t.model = l.model AND t.checkpoint_sha256 = l.checkpoint_sha256
JOIN checkpoints_current s ON s.model = l.source_model AND s.checkpoint_sha256 = l.source_checkpoint_sha256;
