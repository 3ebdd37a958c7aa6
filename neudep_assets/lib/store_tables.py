"""The store's tables: one Arrow schema each (the provenance columns last). Views, manifests' schema
checks and every write use them."""

import pyarrow as pa

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_KNOT = [("dependency_run_id", _S), ("target_class", _I), ("knot", _I)]  # a knot of a target's exact path
_PROVENANCE = [("dagster_run_id", _S), ("code_version", _S), ("written_at", pa.timestamp("us", tz="UTC"))]

TABLES: dict[str, pa.Schema] = {
    name: pa.schema(cols + _PROVENANCE)
    for name, cols in {
        "datasets": [("dataset_id", _S), ("kind", _S), ("n_classes", _I), ("n_train", _I), ("n_val", _I),
                     ("n_ood", _I), ("params_json", _S)],
        "classes": [("dataset_id", _S), ("class_index", _I), ("name", _S), ("label", _S)],
        "checkpoints": [("checkpoint_sha256", _S), ("model", _S), ("arch", _S), ("origin", _S), ("source", _S),
                        ("parent_sha256", _S), ("path", _S), ("dataset_id", _S), ("num_classes", _I),
                        ("num_features", _I), ("n_params", _I), ("train_val_acc", _F), ("train_seconds", _F),
                        ("config_json", _S)],
        "logit_sets": [("logit_set_id", _S), ("checkpoint_sha256", _S), ("model", _S), ("dataset_id", _S),
                       ("split", _S), ("n_samples", _I), ("n_classes", _I), ("logits_sha256", _S),
                       ("samples_sha256", _S), ("accuracy", _F), ("path", _S)],
        "moments": [("moments_id", _S), ("kind", _S), ("model", _S), ("checkpoint_sha256", _S),
                    ("target_model", _S), ("target_checkpoint_sha256", _S), ("dataset_id", _S), ("split", _S),
                    ("n_samples", _I), ("n_classes", _I), ("rank", _I), ("min_eig", _F), ("max_eig", _F),
                    ("path", _S)],
        "dependency_runs": [("dependency_run_id", _S), ("kind", _S), ("lambda_index", _I), ("lambda_rel", _F),
                            ("lambda_value", _F), ("lambda_mode", _S), ("model", _S), ("checkpoint_sha256", _S),
                            ("source_model", _S), ("source_checkpoint_sha256", _S), ("dataset_id", _S),
                            ("fit_split", _S), ("eval_split", _S), ("moments_id", _S), ("solver", _S),
                            ("tol", _F), ("max_kkt", _F), ("n_targets", _I), ("config_json", _S),
                            ("logit_gauge", _S)],
        "dependencies": [("dependency_run_id", _S), ("lambda_index", _I), ("target_class", _I),
                         ("source_class", _I), ("coef", _F)],
        "dependency_metrics": [("dependency_run_id", _S), ("lambda_index", _I), ("target_class", _I),
                               ("lambda_abs", _F), ("lambda_max", _F), ("kkt", _F), ("n_sources", _I),
                               ("abs_err", _F), ("rel_err", _F), ("acc", _F), ("orig_acc", _F), ("pos_acc", _F),
                               ("orig_pos_acc", _F), ("n_pos", _I), ("fit_err", _F), ("n_candidates", _I),
                               ("n_nonzero", _I), ("thm3_screened", _I),
                               ("thm3_violations", _I), ("conj1_screened", _I), ("conj1_violations", _I),
                               ("abs_err_refit", _F), ("rel_err_refit", _F), ("acc_refit", _F),
                               ("pos_acc_refit", _F), ("fit_err_refit", _F), ("unexplained_share", _F),
                               ("offset_dir_share", _F)],
        "dependency_path_knots": _KNOT + [("lambda_abs", _F), ("lambda_rel", _F), ("n_sources", _I), ("fit_err", _F),
                                          ("unexplained_share", _F), ("seg_curv", _F), ("exact", _B)],  # lib/covlasso/path.py
        "dependency_path": _KNOT + [("source_class", _I), ("coef", _F)],
        "class_diagnostics": [("dependency_run_id", _S), ("target_class", _I), ("err0", _F), ("rel_err0", _F),
                              ("rank", _I), ("eq5_violations", _I), ("eq5_max_violation", _F)],
        "comparisons": [("comparison_id", _S), ("kind", _S), ("model", _S), ("source_model", _S),
                        ("lambda_rel", _F), ("metric", _S), ("value", _F), ("detail", _S), ("logit_gauge", _S)],
        "logit_stats": [("logit_set_id", _S), ("checkpoint_sha256", _S), ("model", _S), ("dataset_id", _S),
                        ("split", _S), ("n_samples", _I), ("n_classes", _I), ("mean_logit_mean", _F),
                        ("mean_logit_std", _F), ("within_sample_std", _F), ("offset_share", _F),
                        ("top_logit_mean", _F), ("top_minus_mean", _F)],
        "incremental_results": [("result_id", _S), ("model", _S), ("checkpoint_sha256", _S), ("dataset_id", _S),
                                ("setting", _S), ("split_seed", _I), ("seed", _I), ("method", _S), ("base_origin", _S),
                                ("base_checkpoint_sha256", _S), ("baseline_checkpoint_sha256", _S), ("n_base", _I),
                                ("n_new", _I), ("l1", _F), ("overall_acc", _F), ("base_acc", _F), ("new_acc", _F),
                                ("pos_neg_acc", _F), ("epoch_seconds", _F), ("baseline_epoch_seconds", _F),
                                ("time_ratio", _F), ("dependency_run_id", _S), ("config_json", _S),
                                ("epoch_seconds_cached", _F), ("time_ratio_cached", _F)],
        "derived_models": [("model", _S), ("parent_model", _S), ("parent_sha256", _S), ("role", _S), ("alpha", _F),
                           ("seed", _I), ("pairs_json", _S), ("checkpoint_sha256", _S), ("path", _S),
                           ("config_json", _S)],
        "regularization_pairs": [("model", _S), ("parent_sha256", _S), ("pair_index", _I), ("class_a", _I),
                                 ("class_b", _I), ("name_a", _S), ("name_b", _S), ("coef", _F), ("reason", _S),
                                 ("logit_gauge", _S), ("lambda_rel", _F), ("dependency_run_id", _S)],
        "regularization_results": [("result_id", _S), ("parent_model", _S), ("parent_sha256", _S), ("model", _S),
                                   ("role", _S), ("seed", _I), ("alpha", _F), ("checkpoint_sha256", _S),
                                   ("accuracy", _F), ("ood_aupr", _F), ("lambda_rel", _F), ("logit_gauge", _S),
                                   ("dependency_run_id", _S)],
        # which analyses a model's (or pair's) latest `dependencies` materialization points to: "current"
        "current_analyses": [(c, _S) for c in ("kind", "model", "source_model", "role", "logit_gauge",
                                               "dependency_run_id")],
    }.items()
}
