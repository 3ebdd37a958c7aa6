"""The whole graph on a tiny config: every asset, check and store table; reruns; bad input."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from neudep_assets.cli import PipelineError, run_pipeline
from neudep_assets.lib.store import ResultStore

TINY = Path(__file__).with_name("tiny.yaml")
TABLES = ("datasets", "classes", "checkpoints", "logit_sets", "moments", "dependency_runs", "dependencies",
          "dependency_metrics", "class_diagnostics", "comparisons", "logit_stats")


def _counts(store: ResultStore) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count(*) AS n FROM {t}")["n"].iloc[0]) for t in TABLES}


def run_tiny(config: Path, tmp_path_factory, name: str):
    """The whole pipeline of `config` into a fresh data root and an ephemeral Dagster instance."""
    root = tmp_path_factory.mktemp(name)
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(config, root, instance=instance, log=lambda *_: None)
    return root, instance


def pipeline_fixture(config: Path, name: str):
    """A module-scoped fixture `name`: (data root, instance) of the whole pipeline of `config`, run once."""
    return pytest.fixture(scope="module", name=name)(lambda tmp_path_factory: run_tiny(config, tmp_path_factory, name))


tiny_run = pipeline_fixture(TINY, "tiny_run")


def test_whole_graph_materializes_and_fills_every_table(tiny_run):
    root, instance = tiny_run
    store = ResultStore(root)
    counts = _counts(store)
    assert all(n > 0 for n in counts.values()), counts
    assert counts["checkpoints"] == 2 and counts["logit_sets"] == 6  # 2 models × train/val/ood
    kinds = store.query("SELECT kind, count(DISTINCT model || source_model) AS n FROM dependency_runs GROUP BY ALL")
    assert dict(zip(kinds["kind"], kinds["n"])) == {"within": 2, "between": 2}
    lineage = store.query("SELECT * FROM dependency_lineage WHERE kind = 'between' LIMIT 5")
    assert len(lineage) and lineage["source_model"].ne(lineage["model"]).all()
    assert lineage["target_name"].notna().all() and lineage["source_name"].notna().all()
    # a between edge never uses the target's own class
    assert store.query("SELECT count(*) AS n FROM dependency_lineage WHERE source_class = target_class")["n"][0] == 0
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("dependencies"), "certified"), limit=10)
    assert checks and all(c.status.value == "SUCCEEDED" for c in checks)


def test_second_run_recomputes_nothing_and_adds_no_rows(tiny_run):
    root, instance = tiny_run
    store = ResultStore(root)
    before = _counts(store)
    stamps = {p: p.stat().st_mtime_ns for p in (root / "store").rglob("*.parquet")}
    runs = len(instance.get_run_records())
    # nothing is missing or stale (Dagster's code and data versions): no run is launched at all,
    # so a no-op rerun adds nothing to the event log
    assert run_pipeline(TINY, root, instance=instance, log=lambda *_: None) == []
    assert len(instance.get_run_records()) == runs
    assert _counts(store) == before
    assert {p: p.stat().st_mtime_ns for p in (root / "store").rglob("*.parquet")} == stamps


def _local_checkpoint_config(tmp_path: Path, folder: Path) -> Path:
    text = TINY.read_text().split("models:")[0] + (
        "models:\n  - name: mine\n    checkpoint: " + str(folder) + "\ndependencies: {lambdas: [0.1]}\n")
    cfg = tmp_path / "local.yaml"
    cfg.write_text(text)
    return cfg


def test_corrupt_checkpoint_fails_naming_the_file_and_writes_nothing(tiny_run, tmp_path):
    root, _ = tiny_run
    good = next((root / "checkpoints" / "cnn").iterdir())
    bad = tmp_path / "ckpt"
    shutil.copytree(good, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cfg = _local_checkpoint_config(tmp_path, bad)
    data = tmp_path / "data"
    with pytest.raises(PipelineError, match="model.safetensors"):
        run_pipeline(cfg, data, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    store = ResultStore(data)
    assert _counts(store)["checkpoints"] == 0 and _counts(store)["logit_sets"] == 0
    assert not (data / "artifacts").exists()
    # after the fix, the same config and data root work
    shutil.copy(good / "model.safetensors", weights)
    run_pipeline(cfg, data, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    # one λ of the raw analysis + its centered-gauge cross-check at that λ
    assert _counts(store)["checkpoints"] == 1 and _counts(store)["dependency_runs"] == 2


def test_class_count_mismatch_names_both_counts(tiny_run, tmp_path):
    root, _ = tiny_run
    good = next((root / "checkpoints" / "vit").iterdir())
    cfg = _local_checkpoint_config(tmp_path, good)
    cfg.write_text(cfg.read_text().replace("n_classes: 12", "n_classes: 10"))
    data = tmp_path / "data"
    with pytest.raises(PipelineError, match=r"12.*10|10.*12"):
        run_pipeline(cfg, data, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    assert _counts(ResultStore(data))["checkpoints"] == 0


def test_missing_checkpoint_folder_and_unknown_arch_are_named(tmp_path):
    cfg = _local_checkpoint_config(tmp_path, tmp_path / "no_such_folder")
    with pytest.raises(PipelineError, match="no_such_folder"):
        run_pipeline(cfg, tmp_path / "d1", instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    cfg.write_text(TINY.read_text().replace("arch: resnet10t", "arch: resnet_does_not_exist"))
    with pytest.raises(PipelineError, match="resnet_does_not_exist"):
        run_pipeline(cfg, tmp_path / "d2", instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    assert _counts(ResultStore(tmp_path / "d2"))["checkpoints"] == 0


# the §3.2 / §3.3 queries need those assets' results: tests/test_uses_pipeline.py runs them
@pytest.mark.parametrize("query", sorted(p for p in (Path(__file__).parents[1] / "sql" / "queries").glob("*.sql")
                                         if not p.stem.startswith(("incremental_", "regularization_"))),
                         ids=lambda p: p.stem)
def test_cookbook_queries_run_on_a_real_store(tiny_run, query):
    root, _ = tiny_run
    params = {"model": "cnn", "target": "%", "lam": 0.1, "bound": "rel_err", "at_most": 1.0, "old": "", "new": "", "gauge": "raw", "threshold": 0.05}
    text = query.read_text()
    used = {k: v for k, v in params.items() if f"${k}" in text}
    df = ResultStore(root).query(text, used or None)
    assert len(df) > 0, query.name


def test_sparsest_dependency_query_agrees_with_solving_at_that_lambda(tiny_run):
    """The cookbook's sparsest dependency per class, from the stored exact path: solved at that λ directly, the
    CovLasso has the same sources and an unexplained share ≤ x."""
    import numpy as np

    from neudep_assets.lib.analysis import analyse
    from neudep_assets.lib.analysis.offsets import apply_gauge, gauge_moment
    from neudep_assets.lib.store import load_arrays

    root, _ = tiny_run
    store = ResultStore(root)
    text = (Path(__file__).parents[1] / "sql" / "queries" / "sparsest_dependency.sql").read_text()
    x = 0.6
    got = store.query(text, {"model": "cnn", "bound": "unexplained_share", "at_most": x})
    got = got[got.kind == "within"]
    assert len(got) > 0 and got.exact.all()
    ev = load_arrays(store.query("SELECT path FROM logit_sets WHERE model = 'cnn' AND split = 'val'").path.iloc[0])
    for run_id, rows in got.groupby("dependency_run_id"):  # each analysis with its own C and gauge
        run = store.query("SELECT * FROM dependency_runs WHERE dependency_run_id = $r", {"r": run_id})
        gauge = run.logit_gauge.iloc[0] or "raw"
        C = gauge_moment(load_arrays(store.query("SELECT path FROM moments WHERE moments_id = $m",
                                                 {"m": run.moments_id.iloc[0]}).path.iloc[0])["C"], gauge)
        kw = dict(eval_source=apply_gauge(ev["logits"], gauge), eval_labels=ev["labels"], lambda_mode="absolute",
                  tol=1e-12, gauge=gauge)
        for row in rows.itertuples():
            res = analyse(C, [row.lambda_abs], **kw)
            at = res.per_target.set_index("target_class").loc[row.target_class]
            c = res.path.coef[0, row.target_class]  # at a knot a class about to enter or leave: round-off at most
            assert np.count_nonzero(np.abs(c) > 1e-9 * np.abs(c).max()) == row.n_sources
            assert at.unexplained_share <= x + 1e-8
    assert (got.unexplained_share <= x + 1e-8).all()


def test_pair_with_a_missing_side_names_both_models_and_writes_nothing(tiny_run, tmp_path):
    from neudep_assets.defs.partitions import register
    from neudep_assets.definitions import build_defs

    root, _ = tiny_run
    data = tmp_path / "data"
    shutil.copytree(root / "checkpoints", data / "checkpoints")  # no retraining
    defs = build_defs(str(TINY), str(data))
    instance = dg.DagsterInstance.ephemeral()
    register(["cnn", "vit"], instance)
    for job, key in (("dataset_job", None), ("model_job", "cnn")):
        assert defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key).success
    result = defs.resolve_job_def("pair_job").execute_in_process(
        instance=instance, partition_key="cnn|vit", raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "vit" in error.message + str(error.cause and error.cause.message)
    kinds = ResultStore(data).query("SELECT DISTINCT kind, model FROM dependency_runs")
    assert kinds.to_dict("records") == [{"kind": "within", "model": "cnn"}]  # nothing of the pair


def test_logit_gauges_live_side_by_side_and_never_mix(tiny_run, tmp_path, capsys):
    """The default (raw) run stored a centered cross-check beside it; asking for the centered gauge on
    that store computes its own analyses (new keys) and leaves the raw ones untouched."""
    root, instance = tiny_run
    store = ResultStore(root)
    q = ("SELECT kind, model, logit_gauge, count(*) AS n_lambdas FROM dependency_runs "
         "GROUP BY dependency_run_id, kind, model, logit_gauge")

    def analyses():  # one (kind, model, gauge, λ count) per stored analysis
        return sorted(map(tuple, store.query(q).to_numpy().tolist()))

    first = [("between", "cnn", "raw", 3), ("between", "vit", "raw", 3),
             ("within", "cnn", "centered", 1), ("within", "cnn", "raw", 3),
             ("within", "vit", "centered", 1), ("within", "vit", "raw", 3)]
    assert analyses() == sorted(first)
    # offset diagnostics for every logit set; the centered analyses have no offset direction
    assert len(store.query("SELECT * FROM logit_stats")) == 6
    share = store.query("SELECT logit_gauge, max(offset_dir_share) AS mx, min(offset_dir_share) AS mn "
                        "FROM dependency_summary GROUP BY ALL ORDER BY ALL")
    assert share.loc[share["logit_gauge"] == "centered", "mx"].iloc[0] < 1e-9
    assert 0 <= share.loc[share["logit_gauge"] == "raw", "mn"].iloc[0]
    assert np.isfinite(share.loc[share["logit_gauge"] == "raw", "mx"].iloc[0])  # > 1 where the cross term is < 0
    raw_files = {p: p.stat().st_mtime_ns for p in store.analyses_dir.glob("*/dependency_metrics.parquet")}
    raw_q = ("SELECT dependency_run_id, model, target_class, rel_err FROM dependency_summary WHERE kind = 'within' "
             "AND logit_gauge = 'raw' AND abs(lambda_rel - 0.1) < 1e-9 ORDER BY ALL")
    raw_at_01 = store.query(raw_q)

    cfg = tmp_path / "centered.yaml"
    cfg.write_text(TINY.read_text().replace("  star_plots: 1", "  star_plots: 1\n  logit_gauge: centered"))
    run_pipeline(cfg, root, instance=instance, log=lambda *_: None)
    # its own analyses in the centered gauge (and a raw cross-check at λ 0.1), beside the first ones
    assert analyses() == sorted(first + [("between", "cnn", "centered", 3), ("between", "vit", "centered", 3),
                                         ("within", "cnn", "centered", 3), ("within", "cnn", "raw", 1),
                                         ("within", "vit", "centered", 3), ("within", "vit", "raw", 1)])
    # nothing of the raw analyses was rewritten, and their numbers are what they were
    assert all(p.stat().st_mtime_ns == t for p, t in raw_files.items())
    raw_after = store.query(raw_q)
    old = raw_after["dependency_run_id"].isin(raw_at_01["dependency_run_id"])
    pd.testing.assert_frame_equal(raw_at_01, raw_after[old].reset_index(drop=True))
    check = raw_after[~old].merge(raw_at_01, on=["model", "target_class"])  # the raw cross-check agrees
    assert len(check) == 24 and np.allclose(check["rel_err_x"], check["rel_err_y"], rtol=1e-6, atol=1e-9)
    # the full centered analysis agrees with the centered cross-check at λ_rel 0.1 (same gauge, same λ)
    cen = store.query("SELECT r.model, m.target_class, m.rel_err, r.dependency_run_id, r.n_l FROM dependency_metrics m "
                      "JOIN (SELECT *, count(*) OVER (PARTITION BY dependency_run_id) AS n_l FROM dependency_runs) r "
                      "USING (dependency_run_id, lambda_index) WHERE r.kind = 'within' AND r.logit_gauge = 'centered' "
                      "AND abs(r.lambda_rel - 0.1) < 1e-9")
    one, full = cen[cen["n_l"] == 1], cen[cen["n_l"] == 3]
    merged = one.merge(full, on=["model", "target_class"])
    assert len(merged) == 24 and np.allclose(merged["rel_err_x"], merged["rel_err_y"], rtol=1e-6, atol=1e-9)
    # the comparisons summary keeps one row per gauge
    summ = store.query("SELECT DISTINCT logit_gauge FROM comparisons WHERE kind = 'summary_within'")
    assert set(summ["logit_gauge"]) == {"raw", "centered"}
    # and the CLI summary shows the offsets and the share per gauge
    from neudep_assets.cli import print_summary

    capsys.readouterr()
    print_summary(root)
    out = capsys.readouterr().out
    assert "logit offsets" in out and "offset_share_pct" in out and "centered" in out and "raw" in out


def test_an_uncertified_analysis_is_not_written_and_fails_its_blocking_check(tiny_run, tmp_path, monkeypatch):
    """A certificate above the analysis's own tol (here a loose 1e-6): the asset fails naming the worst
    target, its blocking check fails, nothing of the analysis is written, and the run stops before
    anything downstream (pairs, comparisons) runs."""
    import neudep_assets.defs.dependency_assets as da

    root, _ = tiny_run
    data = tmp_path / "data"
    shutil.copytree(root / "checkpoints", data / "checkpoints")  # no retraining
    real = da.merge_solved  # what the commit step certifies: the merged analysis

    def uncertified(*args, **kwargs):
        res = real(*args, **kwargs)
        bad = (res.per_target["target_class"] == 3) & (res.per_target["lambda_index"] == 1)
        res.per_target.loc[bad, "kkt"] = 1e-3
        return res

    monkeypatch.setattr(da, "merge_solved", uncertified)
    cfg = tmp_path / "loose.yaml"
    cfg.write_text(TINY.read_text().replace("  star_plots: 1", "  star_plots: 1\n  tol: 1.0e-6"))
    instance = dg.DagsterInstance.ephemeral()
    name = ResultStore(root).query("SELECT name FROM classes WHERE class_index = 3")["name"][0]
    with pytest.raises(PipelineError, match=rf"exceed tol = 1e-06.*{name!r} \(class 3\) at λ=0.1: KKT 1.00e-03"):
        run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    store = ResultStore(data)
    assert _counts(store)["logit_sets"] == 3  # what came before is there
    assert {t: n for t, n in _counts(store).items() if t.startswith(("dependenc", "class_d", "compar"))} == {
        "dependency_runs": 0, "dependencies": 0, "dependency_metrics": 0, "class_diagnostics": 0, "comparisons": 0}
    assert not list(store.analyses_dir.glob("*")) and not list(store.staging_dir.glob("*"))
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("dependencies"), "certified"), limit=5)
    assert [c.status.value for c in checks] == ["FAILED"]
    for asset in ("dependencies", "between_dependencies", "comparisons"):
        assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is None


def test_an_uncertified_gauge_crosscheck_is_not_written_either(tiny_run, tmp_path, monkeypatch):
    """The centered cross-check is an analysis of its own, through the same certified write: when only it
    exceeds tol, the raw analysis (certified) is committed, the cross-check is not, the asset and its
    blocking check fail naming the cross-check, and nothing downstream runs."""
    import neudep_assets.defs.dependency_assets as da

    root, _ = tiny_run
    data = tmp_path / "data"
    shutil.copytree(root / "checkpoints", data / "checkpoints")  # no retraining
    real = da.solve

    def crosscheck_uncertified(problem, eff, **kwargs):
        res = real(problem, eff, **kwargs)
        if len(eff.lambdas) == 1:  # the cross-check: one λ, the other gauge
            res.per_target.loc[res.per_target["target_class"] == 3, "kkt"] = 1e-3
        return res

    monkeypatch.setattr(da, "solve", crosscheck_uncertified)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(PipelineError, match=r"analysis within-\w+: 1 of 12 CovLasso solutions exceed tol"):
        run_pipeline(TINY, data, instance=instance, log=lambda *_: None)
    store = ResultStore(data)
    runs = store.query("SELECT DISTINCT dependency_run_id, logit_gauge, model FROM dependency_runs")
    assert runs[["logit_gauge", "model"]].to_dict("records") == [{"logit_gauge": "raw", "model": "cnn"}]
    assert [p.name for p in store.analyses_dir.iterdir()] == list(runs["dependency_run_id"])
    assert not list(store.staging_dir.glob("*"))
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("dependencies"), "certified"), limit=5)
    assert [c.status.value for c in checks] == ["FAILED"]
    for asset in ("dependencies", "between_dependencies", "comparisons"):
        assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is None


def test_a_user_holding_the_catalog_read_write_during_a_run(tiny_run):
    """A user holds data/neudep.duckdb read-write, with a table of their own, while the whole graph
    reruns (comparisons included): the run succeeds, and the user keeps their views and table."""
    import subprocess
    import sys

    from tests.test_store_faults import HOLDER, _python

    root, instance = tiny_run
    store = ResultStore(root)
    holder = _python(HOLDER, str(store.ensure_catalog()), "rw")
    try:
        assert holder.stdout.readline().strip() == "open"
        run_pipeline(TINY, root, instance=instance, log=lambda *_: None)
        holder.stdin.write("SELECT count(*) FROM dependency_runs\nSELECT x FROM mine\n")
        holder.stdin.flush()
        n = _counts(store)["dependency_runs"]
        assert [holder.stdout.readline().strip() for _ in range(2)] == [f"[({n},)]", "[(42,)]"]
    finally:
        holder.communicate("", timeout=60)
    assert subprocess.run([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
                           "print(c.execute('SELECT x FROM mine').fetchall())", str(store.catalog_path)],
                          capture_output=True, text=True).stdout.strip() == "[(42,)]"


# -- huge heads: target chunks as steps of their own ----------------------------------------------

_PROVENANCE = ["dagster_run_id", "written_at"]


def _without_analyses(root: Path, dest: Path) -> Path:
    """A copy of a data root whose dependency analyses (and pictures) are gone, its upstream kept."""
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("dagster"))
    shutil.rmtree(dest / "store" / "analyses")
    shutil.rmtree(dest / "artifacts" / "plots", ignore_errors=True)
    return dest


def _materialize_chunked(root: Path, tmp_path: Path, job: str, partition: str, asset: str):
    """One asset on the in-process executor, its targets spread over 3 chunk steps (`chunk_steps` in the
    config) and solved 2 at a time in each (the Launchpad's `target_chunk`)."""
    from neudep_assets.defs.partitions import register
    from neudep_assets.definitions import build_defs

    cfg = tmp_path / "chunked.yaml"
    cfg.write_text(TINY.read_text().replace("dependencies:\n", "dependencies:\n  chunk_steps: 3\n"))
    instance = dg.DagsterInstance.ephemeral()
    register(["cnn", "vit"], instance)
    result = build_defs(str(cfg), str(root)).resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, asset_selection=[dg.AssetKey(asset)], raise_on_error=False,
        run_config={"ops": {asset: {"config": {"target_chunk": 2}}}})
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    return result, steps


@pytest.mark.parametrize("job, partition, asset", [("model_job", "cnn", "dependencies"),
                                                   ("pair_job", "cnn|vit", "between_dependencies")])
def test_target_chunks_as_steps_commit_the_rows_of_an_unsplit_run(tiny_run, tmp_path, job, partition, asset):
    root, instance = tiny_run
    unsplit = {e.step_key for r in instance.get_run_records() for e in instance.all_logs(r.dagster_run.run_id)
               if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
    assert {s for s in unsplit if s.startswith(f"{asset}.dependency_chunk")} == {f"{asset}.dependency_chunk_0"}
    copy = _without_analyses(root, tmp_path / "chunked")
    result, steps = _materialize_chunked(copy, tmp_path, job, partition, asset)
    assert result.success
    assert {s for s in steps if "dependency_chunk" in s} == {f"{asset}.dependency_chunk_{k}" for k in range(3)}
    ref, got = ResultStore(root), ResultStore(copy)
    keys = sorted(p.name for p in got.analyses_dir.iterdir())
    assert keys and all(ref.has_analysis(k) for k in keys)  # the same content addresses
    for key in keys:
        for table in ("dependencies", "dependency_metrics", "class_diagnostics", "dependency_runs"):
            a, b = (s.read(table, key).drop(columns=_PROVENANCE) for s in (got, ref))
            if table == "dependency_runs":  # the effective config records how the run was split, nothing else differs
                a["config_json"], b["config_json"] = (d["config_json"].map(
                    lambda j: {**json.loads(j), "target_chunk": None, "chunk_steps": None}) for d in (a, b))
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not list((copy / "artifacts").glob("dependency_chunks/*.npz"))  # merged chunks are removed
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    mat = result.get_asset_materialization_events()[0].event_specific_data.materialization
    assert mat.tags["dagster/data_version"] in keys  # the data version is the analysis key, as unsplit


def test_a_failing_chunk_step_commits_nothing(tiny_run, tmp_path, monkeypatch):
    from neudep_assets.defs import dependency_assets

    root, _ = tiny_run
    real = dependency_assets.solve_chunk

    def fail_second(problem, eff, targets, **kw):
        if targets[0] == 4:
            raise RuntimeError("chunk 4..5 lost its worker")
        return real(problem, eff, targets, **kw)

    monkeypatch.setattr(dependency_assets, "solve_chunk", fail_second)
    copy = _without_analyses(root, tmp_path / "failed")
    result, steps = _materialize_chunked(copy, tmp_path, "model_job", "cnn", "dependencies")
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failed == ["dependencies.dependency_chunk_1"]
    assert "dependencies.dependencies_commit" not in steps
    assert not list(ResultStore(copy).analyses_dir.glob("*"))  # no analysis, not even a partial one
    assert not result.get_asset_materialization_events()
    monkeypatch.setattr(dependency_assets, "solve_chunk", real)  # the retry commits it whole
    assert _materialize_chunked(copy, tmp_path, "model_job", "cnn", "dependencies")[0].success
    assert len(list(ResultStore(copy).analyses_dir.glob("within-*"))) == 2  # the analysis and its cross-check


def test_pictures_are_store_files_shown_inline_as_small_copies(tiny_run):
    """Each picture is a full-size PNG file (its path in the metadata) and a compact palette PNG inline;
    a materialization's event stays small, and no STEP_OUTPUT event carries the pictures again."""
    import base64
    import io

    from PIL import Image

    from neudep_assets.defs.partitions import pair_key
    from dagster._serdes import serialize_value

    root, instance = tiny_run
    for asset, partition in (("dependencies", "cnn"), ("between_dependencies", pair_key("cnn", "vit"))):
        rec = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records[0]
        meta = rec.asset_materialization.metadata
        for name in ("sparsity_plot", "screening_plot", "fig3", "strongest_dependencies"):
            inline = meta[name].value
            png = base64.b64decode(inline.split("base64,")[1].split(")")[0])
            shown = Image.open(io.BytesIO(png))
            assert shown.mode == "P" and len(inline) < 15_000, (asset, name, len(inline))
            files = ([Path(meta[f"{name}_file"].value)] if f"{name}_file" in meta
                     else sorted(Path(meta[f"{name}_files"].value).glob(f"{name}_*.png")))
            assert files and all(f.is_file() and f.read_bytes()[:4] == b"\x89PNG" for f in files)
            assert Image.open(files[0]).size == shown.size  # inline at full size, only fewer colours
        assert len(serialize_value(rec.event_log_entry)) < 60_000
    outputs = [e for r in instance.get_run_records() for e in instance.all_logs(r.dagster_run.run_id)
               if e.dagster_event and e.dagster_event.event_type_value == "STEP_OUTPUT"]
    assert outputs and not any("base64" in serialize_value(e) for e in outputs)
