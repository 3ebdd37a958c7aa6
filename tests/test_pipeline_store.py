"""The store decides: on the tiny graph, results lost from the store are recomputed, "current" is what a
model's latest materialization points to (the same in SQL as in the UI), and every registered model
name (a copied checkpoint folder too) has its rows. The tests of this module run in order on one store."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from neudep_assets.cli import main, run_pipeline
from neudep_assets.definitions import build_defs
from neudep_assets.lib.store import ResultStore

TINY = Path(__file__).with_name("tiny.yaml")
SQL = Path(__file__).parents[1] / "sql" / "queries"


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("store-decides")
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("store-decides-dagster"))) as instance:
        run_pipeline(TINY, root, instance=instance, log=_quiet)
        yield root, instance


def _rerun(tiny, log=_quiet):
    root, instance = tiny
    return run_pipeline(TINY, root, instance=instance, log=log)


def _lineage(store: ResultStore):
    return store.query("SELECT dependency_run_id, lambda_rel, target_class, source_class, coef, target_name, "
                       "source_name FROM dependency_lineage ORDER BY ALL")


def _current(store: ResultStore, model: str, role: str = "primary") -> str:
    runs = store.query("SELECT DISTINCT dependency_run_id FROM latest_dependency_runs WHERE kind = 'within' AND "
                       "model = $m AND role = $r", {"m": model, "r": role})["dependency_run_id"]
    assert len(runs) == 1, runs
    return runs[0]


def test_a_deleted_analysis_is_recomputed_and_a_second_run_launches_nothing(tiny):
    root, _ = tiny
    store = ResultStore(root)
    before = _lineage(store)
    run = _current(store, "vit")
    shutil.rmtree(root / "store" / "analyses" / run)
    assert not store.has_analysis(run)
    lines = []
    done = _rerun(tiny, lines.append)
    assert ("model_job", "vit", ["dependencies"]) in done
    assert any(f"analyses/{run} not in the store" in line for line in lines), lines
    assert store.has_analysis(run)
    after = _lineage(store)
    assert after.drop(columns="coef").equals(before.drop(columns="coef"))
    assert (after["coef"] - before["coef"]).abs().max() < 1e-9
    assert _rerun(tiny) == []


def test_a_quarantined_crosscheck_is_recomputed(tiny):
    root, _ = tiny
    store = ResultStore(root)
    run = _current(store, "cnn", "crosscheck")
    aside = root / "quarantine-test"
    aside.mkdir()
    shutil.move(root / "store" / "analyses" / run, aside / run)
    assert ("model_job", "cnn", ["dependencies"]) in _rerun(tiny)
    assert store.has_analysis(run)
    assert _rerun(tiny) == []


def test_zeroed_classes_and_checkpoints_files_come_back(tiny):
    root, _ = tiny
    store = ResultStore(root)
    dataset_id = store.query("SELECT dataset_id FROM datasets")["dataset_id"][0]
    sha = store.query("SELECT checkpoint_sha256 FROM checkpoints WHERE model = 'cnn'")["checkpoint_sha256"][0]
    classes = root / "store" / "classes" / f"{dataset_id}.parquet"
    ckpt = root / "store" / "checkpoints" / f"{sha}.parquet"
    names = store.read("classes", dataset_id)["name"].tolist()
    classes.write_bytes(b"")
    ckpt.write_bytes(b"")
    done = _rerun(tiny)
    assert ("dataset_job", None, ["dataset"]) in done
    assert ("model_job", "cnn", ["checkpoint", "logits", "moments", "dependencies"]) in done
    assert store.read("classes", dataset_id)["name"].tolist() == names
    assert store.read("checkpoints", sha)["model"].tolist() == ["cnn"]
    assert store.query("SELECT count(*) AS n FROM dependency_lineage WHERE target_name IS NULL")["n"][0] == 0
    assert "cnn" in set(store.query((SQL / "models.sql").read_text())["model"])
    assert _rerun(tiny) == []


def test_the_store_watch_sensor_and_the_schedule_launch_what_the_store_lost(tiny):
    from neudep_assets.defs.sensors import store_watch

    root, instance = tiny
    store = ResultStore(root)
    defs = build_defs(str(TINY), str(root))

    def tick():
        with dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                     resources={"neudep": defs.resources["neudep"]}) as context:
            return store_watch(context)

    assert isinstance(tick(), dg.SkipReason)
    run = _current(store, "cnn")
    shutil.rmtree(root / "store" / "analyses" / run)
    requests = tick().run_requests
    assert [(r.job_name, r.partition_key, r.asset_selection) for r in requests] == [
        ("model_job", "cnn", [dg.AssetKey("dependencies")])]
    schedule = defs.resolve_schedule_def("rerun_stale_model")  # the weekly schedule sees the loss too
    with dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                   resources={"neudep": defs.resources["neudep"]}) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [(r.partition_key, r.asset_selection) for r in requests] == [("cnn", [dg.AssetKey("dependencies")])]
    assert _rerun(tiny) == [("model_job", "cnn", ["dependencies"])]
    assert isinstance(tick(), dg.SkipReason)


def test_export_graph_and_stars_read_the_current_analysis_not_its_crosscheck(tiny, tmp_path, monkeypatch, capsys):
    root, _ = tiny
    monkeypatch.setenv("NEUDEP_DATA", str(root))
    monkeypatch.setenv("NEUDEP_CONFIG", str(TINY))
    main(["export-graph", "--model", "vit", "--out", str(tmp_path / "g.json"), "--format", "json"])
    main(["stars", "--model", "cnn", "--top", "1", "--out", str(tmp_path / "stars")])
    main(["export-graph", "--model", "vit", "--gauge", "centered", "--out", str(tmp_path / "c.json"),
          "--format", "json"])
    out = capsys.readouterr().out
    assert "wrote" in out and "spans" not in out
    assert list((tmp_path / "stars").glob("*.png"))


def _launch_dependencies(root: Path, instance, model: str, lambdas=None):
    """dependencies[model] as the Launchpad runs it (a run config of the user's, or none)."""
    defs = build_defs(str(TINY), str(root))
    run_config = {"ops": {"dependencies": {"config": {"lambdas": lambdas}}}} if lambdas else {}
    result = defs.resolve_job_def("model_job").execute_in_process(
        instance=instance, partition_key=model, run_config=run_config, asset_selection=[dg.AssetKey("dependencies")])
    assert result.success
    return result


def _share_rows(store: ResultStore, model: str):
    share = store.query((SQL / "dependency_share.sql").read_text())
    return share[(share["kind"] == "within") & (share["model"] == model)]


def test_an_experiment_is_current_until_the_project_config_is_relaunched(tiny):
    root, instance = tiny
    store = ResultStore(root)
    default = _current(store, "vit")
    default_rows = len(store.query("SELECT * FROM dependency_lineage WHERE dependency_run_id = $r", {"r": default}))
    result = _launch_dependencies(root, instance, "vit", [0.3, 0.03])
    meta = result.asset_materializations_for_node("dependencies")[0].metadata
    assert "not available" in meta["share_with_dependency_at_0.1"].value  # never a 0 for a λ it does not hold
    assert "not available" in meta["share_with_dependency_centered_gauge"].value
    experiment = _current(store, "vit")
    assert experiment != default
    lam = store.query("SELECT list(lambda_rel ORDER BY lambda_index) AS l FROM dependency_runs "
                      "WHERE dependency_run_id = $r", {"r": experiment})["l"][0]
    assert list(lam) == [0.3, 0.03]
    rows = _share_rows(store, "vit")  # the model keeps its rows: at its own λ, said so
    assert len(rows) == 2 and set(rows["role"]) == {"primary", "crosscheck"}
    assert rows["lambda_rel"].tolist() == [0.03, 0.03]
    assert experiment in set(rows["dependency_run_id"])
    # the default analysis stays queryable
    assert len(store.query("SELECT * FROM dependency_lineage WHERE dependency_run_id = $r", {"r": default})) \
        == default_rows
    # the store's current pointer and the UI's latest materialization agree
    ui = instance.get_latest_materialization_event(dg.AssetKey("dependencies")).asset_materialization
    assert ui.metadata["dependency_run_id"].value == experiment
    # relaunched with the project's config: the stored default analysis is found and current again
    result = _launch_dependencies(root, instance, "vit")
    meta = result.asset_materializations_for_node("dependencies")[0].metadata
    assert meta["dependency_run_id"].value == default == _current(store, "vit")
    assert isinstance(meta["share_with_dependency_at_0.1"].value, float)
    rows = _share_rows(store, "vit")
    assert rows["lambda_rel"].tolist() == [0.1, 0.1] and default in set(rows["dependency_run_id"])


def test_a_copied_checkpoint_folder_has_rows_of_its_own(tiny):
    root, _ = tiny
    store = ResultStore(root)
    vit = store.query("SELECT path, checkpoint_sha256 FROM checkpoints WHERE model = 'vit'")
    incoming = root / "checkpoints" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    shutil.copytree(vit["path"][0], incoming / "vit_copy")
    done = _rerun(tiny)
    assert ("model_job", "vit_copy", ["checkpoint", "logits", "moments", "dependencies"]) in done
    sha = vit["checkpoint_sha256"][0]
    for table, n in (("checkpoints", 1), ("logit_sets", 3), ("moments", 1), ("logit_stats", 3)):
        got = store.query(f"SELECT checkpoint_sha256 FROM {table} WHERE model = 'vit_copy'")
        assert len(got) == n and set(got["checkpoint_sha256"]) == {sha}, table
    # the identical weights' analysis is reused, listed under the new name too
    assert _current(store, "vit_copy") == _current(store, "vit")
    models = set(store.query((SQL / "models.sql").read_text())["model"])
    assert {"cnn", "vit", "vit_copy"} <= models
    assert set(_share_rows(store, "vit_copy")["role"]) == {"primary", "crosscheck"}
    current = store.query("SELECT DISTINCT model, source_model FROM dependencies_current")
    assert {("vit_copy", "vit_copy"), ("vit_copy", "cnn"), ("cnn", "vit_copy")} <= set(
        zip(current["model"], current["source_model"]))
    assert _rerun(tiny) == []
