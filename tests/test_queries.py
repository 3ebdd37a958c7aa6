"""The cookbook (sql/queries), the CLI summary and the comparisons summary on a store that holds two
analyses of the same model (a retrain and a second λ grid that also holds 0.1), written before the
logit gauge existed (no gauge: raw) and in the raw gauge, plus a centered-gauge analysis of the
retrain (the cross-check at 0.1): every number is per analysis, or of the latest analysis of each model,
pair and gauge, never a mix of two analyses or two gauges."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.store import ResultStore

QUERIES = Path(__file__).resolve().parents[1] / "sql" / "queries"


def _analysis(key, sha, lambdas, n_sources, rel_err, *, kind="within", model="m", source="m", gauge=None,
              coef=0.5, offset_dir=0.9):
    n = len(n_sources)
    metrics = pd.DataFrame([{"dependency_run_id": key, "lambda_index": li, "target_class": t, "lambda_abs": lam,
                             "lambda_max": 1.0, "kkt": 0.0, "n_sources": n_sources[t], "abs_err": 0.1,
                             "rel_err": rel_err[t], "acc": 0.5, "orig_acc": 0.6, "pos_acc": 0.25,
                             "orig_pos_acc": 1.0, "n_pos": 4, "offset_dir_share": offset_dir,
                             "rel_err_refit": rel_err[t] / 2, "pos_acc_refit": 0.5, "unexplained_share": rel_err[t]}
                            for li, lam in enumerate(lambdas) for t in range(n)])
    edges = pd.DataFrame([{"dependency_run_id": key, "lambda_index": li, "target_class": t,
                           "source_class": (t + 1) % n, "coef": coef} for li in range(len(lambdas)) for t in range(n)])
    runs = [{"dependency_run_id": key, "kind": kind, "lambda_index": li, "lambda_rel": lam, "lambda_value": lam,
             "lambda_mode": "relative", "model": model, "checkpoint_sha256": sha, "source_model": source,
             "source_checkpoint_sha256": sha, "dataset_id": "d", "tol": 1e-9, "max_kkt": 0.0, "logit_gauge": gauge}
            for li, lam in enumerate(lambdas)]
    return {"dependency_metrics": metrics, "dependencies": edges, "dependency_runs": runs,
            "class_diagnostics": pd.DataFrame({"dependency_run_id": key, "target_class": range(n)})}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("data"))
    store.write("classes", "d", [{"dataset_id": "d", "class_index": i, "name": f"class {i}"} for i in range(3)],
                run_id="r", code_version="v")
    for sha, acc in (("c1" * 32, 0.9), ("c2" * 32, 0.8)):
        store.write("checkpoints", sha, [{"checkpoint_sha256": sha, "model": "m", "dataset_id": "d"}],
                    run_id="r", code_version="v")
        store.write("logit_sets", sha, [{"checkpoint_sha256": sha, "dataset_id": "d", "split": "val", "accuracy": acc}],
                    run_id="r", code_version="v")
    # offsets of the two checkpoints; the retrain's logits were recomputed once (a code change): the later counts
    for key, sha, share in (("c1-val", "c1", 0.84), ("c2-val", "c2", 0.5), ("c2-val-v2", "c2", 0.01)):
        store.write("logit_stats", key, [{"logit_set_id": key, "checkpoint_sha256": sha * 32, "model": "m",
                                          "dataset_id": "d", "split": "val", "n_samples": 10, "offset_share": share}],
                    run_id="r", code_version="v")
        time.sleep(0.01)
    # the first checkpoint, analysed before the gauge existed (no gauge: raw): every class has a dependency at 0.1
    store.commit_analysis("old", _analysis("old", "c1" * 32, [0.1], [1, 1, 1], [0.1, 0.1, 0.1]), run_id="r1",
                          code_version="v")
    time.sleep(0.01)
    # the retrained checkpoint, raw, another grid that also holds 0.1: one class of three has one
    store.commit_analysis("new", _analysis("new", "c2" * 32, [0.5, 0.1], [1, 2, 12], [0.1, 0.3, 0.05], gauge="raw"),
                          run_id="r2", code_version="v")
    time.sleep(0.01)
    # its centered cross-check at 0.1, committed last: two classes of three, other coefficients, no offset
    store.commit_analysis("cen", _analysis("cen", "c2" * 32, [0.1], [3, 2, 12], [0.15, 0.12, 0.5], gauge="centered",
                                           coef=0.25, offset_dir=0.0), run_id="r2", code_version="v")
    time.sleep(0.01)
    # §3.2 / §3.3: two results of one model, two parent checkpoints; only the latest of each counts
    for rid, accs in (("inc-old", [0.1]), ("inc-new", [0.5, 0.7])):
        store.write("incremental_results", rid, [{"result_id": rid, "model": "m", "setting": "90/10", "seed": k,
                                                  "method": "theta_head", "n_base": 2, "n_new": 1, "overall_acc": a}
                                                 for k, a in enumerate(accs)], run_id="r", code_version="v")
        time.sleep(0.01)
    for parent, (run, acc) in {"p1" * 32: ("old", 0.2), "p2" * 32: ("new", 0.8)}.items():
        store.write("regularization_pairs", parent[:4], [{"model": "m", "parent_sha256": parent, "pair_index": 0,
                                                          "class_a": 0, "class_b": 1, "name_a": "class 0",
                                                          "name_b": "class 1", "coef": 0.9}], run_id="r", code_version="v")
        store.write("regularization_results", parent[:4], [{"parent_model": "m", "parent_sha256": parent, "role": role,
                                                            "seed": 0, "alpha": alpha, "accuracy": acc, "ood_aupr": 0.5,
                                                            "lambda_rel": 0.1, "dependency_run_id": run}
                                                           for role, alpha in (("control", 0.0), ("regularized", 1.0))],
                    run_id="r", code_version="v")
        time.sleep(0.01)
    return store


EXPECTED = {  # query → (params, check of the result)
    "dependency_share": ({}, lambda df: df[["model", "logit_gauge", "targets", "with_dependency", "share_pct",
                                            "median_offset_dir_share", "dependency_run_id"]].to_dict("records") ==
                         [{"model": "m", "logit_gauge": "raw", "targets": 3, "with_dependency": 1, "share_pct": 33.3,
                           "median_offset_dir_share": 0.9, "dependency_run_id": "new"},
                          {"model": "m", "logit_gauge": "centered", "targets": 3, "with_dependency": 2,
                           "share_pct": 66.7, "median_offset_dir_share": 0.0, "dependency_run_id": "cen"}]),
    "acc_loss_distribution": ({}, lambda df: df[["logit_gauge", "targets", "dependency_run_id"]].to_dict("records") ==
                              [{"logit_gauge": "raw", "targets": 1, "dependency_run_id": "new"},
                               {"logit_gauge": "centered", "targets": 2, "dependency_run_id": "cen"}]
                              and all(list(q) == [75] * 5 for q in df["pos_acc_loss_pts_q0_25_50_75_100"])),
    "lambda_path": ({}, lambda df: df[["logit_gauge", "lambda_rel", "mean_sources", "dependency_run_id"]]
                    .to_dict("records") ==
                    [{"logit_gauge": "raw", "lambda_rel": 0.5, "mean_sources": 5.0, "dependency_run_id": "new"},
                     {"logit_gauge": "raw", "lambda_rel": 0.1, "mean_sources": 5.0, "dependency_run_id": "new"},
                     {"logit_gauge": "centered", "lambda_rel": 0.1, "mean_sources": 5.67, "dependency_run_id": "cen"}]),
    "strongest_dependencies": ({}, lambda df: df[["target", "gauge", "sources", "offset_dir"]].to_dict("records") ==
                               [{"target": "class 0", "gauge": "raw", "sources": 1, "offset_dir": 0.9},
                                {"target": "class 1", "gauge": "centered", "sources": 2, "offset_dir": 0.0},
                                {"target": "class 0", "gauge": "centered", "sources": 3, "offset_dir": 0.0},
                                {"target": "class 1", "gauge": "raw", "sources": 2, "offset_dir": 0.9}]
                               and df["reconstruction"][1] == "+0.25·class 2"),
    "edge_survival": ({"model": "m", "lam": 0.1}, lambda df: len(df) == 6 and sorted(
        map(tuple, df[["logit_gauge", "analyses_with_edge", "analyses_total", "checkpoints_total", "mean_coef"]]
            .drop_duplicates().to_numpy().tolist())) == [("centered", 1, 1, 1, 0.25), ("raw", 2, 2, 2, 0.5)]),
    "sources_of_class": ({"model": "m", "target": "class 2", "lam": 0.1},
                         lambda df: sorted(zip(df["dependency_run_id"], df["logit_gauge"], df["coef"])) ==
                         [("cen", "centered", 0.25), ("new", "raw", 0.5), ("old", "raw", 0.5)]),
    "incremental_table": ({}, lambda df: df[["model", "seeds", "overall", "overall_std"]].to_dict("records") ==
                          [{"model": "m", "seeds": 2, "overall": 60.0, "overall_std": 14.14}]),
    "regularization_table3": ({"parent": "m"}, lambda df: df[["role", "seeds", "acc", "coef_ab", "coef_ba",
                                                               "parent_coef"]].to_dict("records") ==
                              [{"role": "control", "seeds": 1, "acc": 0.8, "coef_ab": 0.5, "coef_ba": 0.0,
                                "parent_coef": 0.9},
                               {"role": "regularized", "seeds": 1, "acc": 0.8, "coef_ab": 0.5, "coef_ba": 0.0,
                                "parent_coef": 0.9}]),
    "models": ({}, lambda df: df[["sha256", "val_acc"]].to_dict("records") ==
               [{"sha256": "c1" * 6, "val_acc": 0.9}, {"sha256": "c2" * 6, "val_acc": 0.8}]),
    "refit_effect": ({"lam": 0.1}, lambda df: df[["logit_gauge", "targets", "share_pct", "share_refit_pct",
                                                  "median_pos_acc_loss_pts", "median_pos_acc_loss_refit_pts",
                                                  "dependency_run_id"]].to_dict("records") ==
                     [{"logit_gauge": "raw", "targets": 3, "share_pct": 33.3, "share_refit_pct": 66.7,
                       "median_pos_acc_loss_pts": 75.0, "median_pos_acc_loss_refit_pts": 50.0, "dependency_run_id": "new"},
                      {"logit_gauge": "centered", "targets": 3, "share_pct": 66.7, "share_refit_pct": 66.7,
                       "median_pos_acc_loss_pts": 75.0, "median_pos_acc_loss_refit_pts": 50.0,
                       "dependency_run_id": "cen"}]),
    # from the exact paths of a real within and between analysis: checked against sparsest_within and direct solves
    "sparsest_dependency": ({"model": "p", "bound": "unexplained_share", "at_most": 0.05},
                            lambda df: _sparsest_as_solved(df, 0.05)),
    # the retrain's centered analysis against the first checkpoint, which has none in that gauge: all gained
    "checkpoint_diff": ({"model": "m", "old": "c1c1", "new": "c2c2", "lam": 0.1, "gauge": "centered",
                         "threshold": 0.05}, lambda df: sorted(
        zip(df["change"], df["target_class"], df["source_class"], df["old_coef"].isna(), df["new_coef"])) ==
        [("gained", 0, 1, True, 0.25), ("gained", 1, 2, True, 0.25), ("gained", 2, 0, True, 0.25)]),
    "logit_offsets": ({}, lambda df: df[["checkpoint", "split", "offset_share_pct"]].to_dict("records") ==
                      [{"checkpoint": "c1" * 6, "split": "val", "offset_share_pct": 84.0},
                       {"checkpoint": "c2" * 6, "split": "val", "offset_share_pct": 1.0}]),
}


STORE_OF = {"sparsest_dependency": "path_store"}  # queries checked on another store than `store`


def _path_problem():
    rng = np.random.default_rng(7)
    W = rng.normal(size=(6, 9))
    F = np.abs(rng.normal(size=(300, 6))) @ W + 0.05 * rng.normal(size=(300, 9))
    G = F + 0.3 * F @ rng.normal(size=(9, 9))
    labels = rng.integers(0, 9, 300)
    return F, G, labels


@pytest.fixture(scope="module")
def path_store(tmp_path_factory):
    """A within analysis of model p and a between analysis q → p, each with its exact path, as the asset commits them."""
    from neudep_assets.lib.analysis import analyse, second_moment

    F, G, labels = _path_problem()
    store = ResultStore(tmp_path_factory.mktemp("path"))
    store.write("classes", "d", [{"dataset_id": "d", "class_index": i, "name": f"class {i}"} for i in range(9)],
                run_id="r", code_version="v")
    lams = [0.3, 0.02]
    for key, kind, source, kw in (("w", "within", "p", {}),
                                  ("b", "between", "q", {"cross": second_moment(F, G), "eval_target": G,
                                                         "target_second_moment": (G ** 2).mean(0)})):
        res = analyse(second_moment(F), lams, eval_source=F, eval_labels=labels, store_path=True, **kw)
        runs = [{"dependency_run_id": key, "kind": kind, "lambda_index": i, "lambda_rel": lam, "lambda_value": lam,
                 "model": "p", "source_model": source, "checkpoint_sha256": "c" * 64, "dataset_id": "d",
                 "logit_gauge": "raw"} for i, lam in enumerate(lams)]
        store.commit_analysis(key, {**{t: df.assign(dependency_run_id=key) for t, df in res.path_tables.items()},
                                    "dependency_runs": runs}, run_id="r", code_version="v")
    return store


def _sparsest_as_solved(df, x):
    """Each row against solving at the λ found (unexplained share ≤ x there, same sources) and against brute
    force over the stored knots (none within x has fewer sources)."""
    from neudep_assets.lib.analysis import second_moment
    from neudep_assets.lib.covlasso import solve_path

    F, G, _ = _path_problem()
    C = second_moment(F)
    assert set(df["kind"]) == {"within", "between"} and len(df) >= 12 and set(df["bound"]) == {"unexplained_share"}
    for kind, g in df.groupby("kind"):
        cross, M, s = (None, C, np.diag(C)) if kind == "within" else (second_moment(F, G),) * 2 + ((G ** 2).mean(0),)
        for _, row in g.iterrows():
            t, lam = int(row["target_class"]), float(row["lambda_abs"])
            c = solve_path(C, [lam], cross=cross, targets=[t], lambda_mode="absolute", tol=1e-12).coef[0, 0]
            share = (s[t] - 2 * M[:, t] @ c + c @ C @ c) / s[t]
            if share > x + 1e-9 or abs(row["unexplained_share"] - share) > 1e-9:
                return False
            if row["n_sources"] != np.count_nonzero(np.abs(c) > 1e-9):
                return False
    return True


def test_sparsest_dependency_query_equals_the_lib_reader(path_store):
    from neudep_assets.lib.covlasso.path import sparsest_within

    df = path_store.query((QUERIES / "sparsest_dependency.sql").read_text(),
                          {"model": "p", "bound": "unexplained_share", "at_most": 0.05})
    for key, kind in (("w", "within"), ("b", "between")):
        lib = sparsest_within(path_store.read("dependency_path_knots", key), path_store.read("dependency_path", key),
                              0.05)
        per = lib.groupby("target_class").agg(lam=("lambda_abs", "first"), n=("n_sources", "first"))
        got = df[df["kind"] == kind].set_index("target_class")
        assert list(got.index) == list(per.index)
        np.testing.assert_allclose(got["lambda_abs"], per["lam"], rtol=1e-12)
        assert list(got["n_sources"]) == list(per["n"])


@pytest.mark.parametrize("bound,bad,key", [("rel_err", 0, "at_most"), ("unexplained_share", 1.5, "at_most"),
                                           ("rel_err", -0.1, "at_most"), ("fit_rel_err", 0.2, "bound")])
def test_sparsest_dependency_query_refuses_a_bad_bound(path_store, bound, bad, key):
    import duckdb

    with pytest.raises(duckdb.Error, match=key):
        path_store.query((QUERIES / "sparsest_dependency.sql").read_text(),
                         {"model": "p", "bound": bound, "at_most": bad})


@pytest.mark.parametrize("query", sorted(QUERIES.glob("*.sql")), ids=lambda p: p.stem)
def test_cookbook_query_values_on_two_analyses_of_one_model(request, query):
    assert query.stem in EXPECTED, f"{query.name}: add its expected values on this store"
    params, ok = EXPECTED[query.stem]
    df = request.getfixturevalue(STORE_OF.get(query.stem, "store")).query(query.read_text(), params or None)
    assert ok(df), df.to_string()


def test_checkpoint_diff_compares_one_analysis_per_version_in_one_gauge(store):
    """Raw: the two versions have the same edges and coefficients, so nothing changed (mixing in the
    centered analysis, coefficient 0.25, would show moved or duplicated edges)."""
    text = (QUERIES / "checkpoint_diff.sql").read_text()
    params = {"model": "m", "old": "c1c1", "new": "c2c2", "lam": 0.1, "gauge": "raw"}
    assert store.query(text, {**params, "threshold": 0.0}).empty
    lost = store.query(text, {**params, "old": "c2c2", "new": "c1c1", "gauge": "centered", "threshold": 0.0})
    assert list(lost["change"]) == ["lost"] * 3 and lost["new_coef"].isna().all()


def test_latest_analysis_is_one_per_model_and_pair(store):
    latest = store.query("SELECT DISTINCT dependency_run_id, model, logit_gauge FROM latest_dependency_runs "
                         "ORDER BY ALL")
    # the centered cross-check, committed last, does not hide the raw analysis: one latest per gauge
    assert latest.to_dict("records") == [{"dependency_run_id": "cen", "model": "m", "logit_gauge": "centered"},
                                         {"dependency_run_id": "new", "model": "m", "logit_gauge": "raw"}]


def test_comparisons_summary_is_per_analysis(store):
    from neudep_assets.defs.comparison_assets import SUMMARY_SQL

    with store.connect() as con:
        df = con.execute(SUMMARY_SQL, {"dataset": "d"}).df()
    assert sorted(zip(df["dependency_run_id"], df["logit_gauge"], df["lambda_rel"], df["targets"])) == [
        ("cen", "centered", 0.1, 3), ("new", "raw", 0.1, 3), ("new", "raw", 0.5, 3), ("old", "raw", 0.1, 3)]


def test_cli_summary_reports_the_latest_analysis(store, capsys):
    from neudep_assets.cli import print_summary

    print_summary(store.root)
    out = capsys.readouterr().out
    share = out.split("classes with a dependency")[1].split("==")[1]
    assert "33.3" in share and "66.7" in share and " 6 " not in share and " 9 " not in share
    assert "centered" in share and "raw" in share
    offsets = out.split("logit offsets")[1].split("==")[1]
    assert "84.0" in offsets and "50.0" not in offsets and "warning" in offsets


def test_sparsest_dependency_query_on_table1_rel_err_equals_the_lib_reader(store):
    """bound = rel_err: on the λ grid, the fewest sources with Table 1's Rel Err ≤ x (ties: the largest λ)."""
    from neudep_assets.lib.covlasso.path import sparsest_on_grid

    df = store.query((QUERIES / "sparsest_dependency.sql").read_text(), {"model": "m", "bound": "rel_err",
                                                                          "at_most": 0.2})
    assert set(df["bound"]) == {"rel_err"} and (df["rel_err"] <= 0.2).all()
    for key, got in df.groupby("dependency_run_id"):
        lib = sparsest_on_grid(store.read("dependency_metrics", key), store.read("dependencies", key), 0.2)
        per = lib.groupby("target_class").first()
        assert list(got["target_class"]) == list(per.index)
        np.testing.assert_allclose(got["lambda_abs"], per["lambda_abs"])
        assert list(got["n_sources"]) == list(per["n_sources"])
    # "new": class 0 has one source at λ 0.5 and 0.1: the larger λ; class 1 (Rel Err 0.3) has none within 0.2
    new = df[df["dependency_run_id"] == "new"]
    assert list(new["target_class"]) == [0, 2] and new["lambda_abs"].iloc[0] == 0.5
