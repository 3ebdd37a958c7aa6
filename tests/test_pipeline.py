"""The whole graph on a tiny config: every asset, check and store table; reruns; bad input."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from neudep_assets.cli import PipelineError, run_pipeline
from neudep_assets.lib.store import ResultStore

TINY = Path(__file__).with_name("tiny.yaml")
TABLES = ("datasets", "classes", "checkpoints", "logit_sets", "moments", "dependency_runs", "dependencies",
          "dependency_metrics", "class_diagnostics", "comparisons")


def _counts(store: ResultStore) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count(*) AS n FROM {t}")["n"].iloc[0]) for t in TABLES}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(TINY, root, instance=instance, log=lambda *_: None)
    return root, instance


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
        dg.AssetCheckKey(dg.AssetKey("dependencies"), "dependencies_certified"), limit=10)
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
    assert _counts(store)["checkpoints"] == 1 and _counts(store)["dependency_runs"] == 1


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


@pytest.mark.parametrize("query", sorted((Path(__file__).parents[1] / "sql" / "queries").glob("*.sql")),
                         ids=lambda p: p.stem)
def test_cookbook_queries_run_on_a_real_store(tiny_run, query):
    root, _ = tiny_run
    params = {"model": "cnn", "target": "%", "lam": 0.1, "old": "", "new": "", "threshold": 0.05}
    text = query.read_text()
    used = {k: v for k, v in params.items() if f"${k}" in text}
    df = ResultStore(root).query(text, used or None)
    assert len(df) > 0, query.name


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
