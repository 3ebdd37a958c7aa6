"""`neudep cluster-demo` at the tiny size: the graph on a real Dask cluster (scheduler + two one-thread
workers on 127.0.0.1, dagster-dask) and with the default executor in this process, each training its
own checkpoints, give the same store bit for bit; a scheduler that does not answer fails at once."""

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from neudep_assets.cli import PipelineError, main, run_pipeline
from neudep_assets.cluster import free_port, run_cluster_demo, store_differences
from neudep_assets.lib.store import ResultStore

TINY = Path(__file__).with_name("tiny.yaml")


def test_cluster_demo_on_the_tiny_graph_gives_the_default_executors_store(tmp_path):
    """What `make cluster-demo` runs (`run_cluster_demo`), on tests/tiny.yaml with the CovLasso of each
    model and pair split into target chunks (each a step of its own on the workers). This process
    runs two torch threads, the workers one: training and logits run in a fixed count, so the
    checkpoints, logits and every row downstream are the same bytes."""
    import torch

    cfg = tmp_path / "tiny-chunks.yaml"
    cfg.write_text(TINY.read_text().replace("dependencies:\n", "dependencies:\n  chunk_steps: 3\n"))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = run_cluster_demo(cfg, tmp_path / "demo", log=lambda *_: None)
    finally:
        torch.set_num_threads(before)
    assert r.differences == []
    assert r.dask_run_statuses and set(r.dask_run_statuses) == {"SUCCESS"}
    assert {f"{a}.dependency_chunk_{k}" for a in ("dependencies", "between_dependencies")
            for k in range(3)} <= r.dask_steps, sorted(s for s in r.dask_steps if "chunk" in s)
    assert {"checkpoint", "logits"} <= {s.split("[")[0] for s in r.dask_steps}, sorted(r.dask_steps)
    dask, default = (ResultStore(tmp_path / "demo" / k) for k in ("dask", "default"))
    q = "SELECT model, checkpoint_sha256 FROM checkpoints ORDER BY model"
    assert dask.query(q).equals(default.query(q)) and len(dask.query(q)) == 2
    q = "SELECT logit_set_id, logits_sha256 FROM logit_sets ORDER BY logit_set_id"
    assert dask.query(q).equals(default.query(q)) and len(dask.query(q)) == 6
    steps = dask.query("SELECT DISTINCT json_extract(config_json, '$.chunk_steps') AS c FROM dependency_runs")
    assert steps["c"].astype(int).tolist() == [3]
    print(f"tiny graph: dask {r.dask_seconds:.1f}s, in process {r.default_seconds:.1f}s (both with training)")


def test_store_differences_names_what_differs(tmp_path, monkeypatch):
    """The comparison itself: a changed coefficient (even in the last bit) and a changed checkpoint
    sha256 are named; run ids, timestamps and seconds are not. Each store's sandbox is opened once
    (one per table cost ~0.1 s each: seconds per comparison)."""
    import numpy as np

    row = {"checkpoint_sha256": "a" * 64, "model": "m", "arch": "x", "origin": "trained", "source": "neudep",
           "parent_sha256": None, "path": "/p", "dataset_id": "d", "num_classes": 3, "num_features": 2,
           "n_params": 10, "train_val_acc": 0.5, "train_seconds": 1.0, "config_json": "{}"}
    dep = {"dependency_run_id": "r", "lambda_index": 0, "target_class": 1, "source_class": 2, "coef": 0.25}
    stores = []
    for name, ck, coef, secs in (("a", "a" * 64, 0.25, 1.0), ("b", "a" * 64, 0.25, 9.0),
                                 ("c", "b" * 64, np.nextafter(0.25, 1.0), 1.0)):
        s = ResultStore(tmp_path / name)
        s.write("checkpoints", "m", [{**row, "checkpoint_sha256": ck, "train_seconds": secs, "path": f"/{name}"}],
                run_id=name, code_version="v")
        s.write("dependencies", "r", [{**dep, "coef": coef}], run_id=name, code_version="v")
        stores.append(s)
    assert store_differences(stores[0], stores[1]) == []
    assert store_differences(stores[0], stores[2]) == ["checkpoints.checkpoint_sha256 differs",
                                                       "dependencies.coef differs"]
    assert store_differences(stores[0], stores[2], rtol=1e-12) == ["checkpoints.checkpoint_sha256 differs"]
    assert store_differences(stores[0], stores[2], detail=True) == [
        "checkpoints.checkpoint_sha256 differs (1 of 1 rows)",
        "dependencies.coef differs (1 of 1 rows, largest relative difference 2.2e-16)"]
    opened = []
    connect = ResultStore.connect
    monkeypatch.setattr(ResultStore, "connect", lambda self: opened.append(self.root) or connect(self))
    assert len(store_differences(stores[0], stores[2])) == 2 and sorted(opened) == [tmp_path / "a", tmp_path / "c"]


def test_a_scheduler_that_does_not_answer_fails_at_once_naming_it(tmp_path, monkeypatch, capsys):
    """`neudep cluster-demo --scheduler ADDRESS` and a config's `executor.scheduler`: a clear error
    naming the address within seconds, before anything is written. The wait is shortened here (the
    default's bound is checked below): the test is about the error, not about how long Dask retries."""
    from neudep_assets.defs import executors

    assert executors.SCHEDULER_TIMEOUT <= 10  # "at once" for a user: the default wait is seconds
    monkeypatch.setattr(executors, "SCHEDULER_TIMEOUT", 0.5)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    data = tmp_path / "data"
    monkeypatch.setenv("NEUDEP_CONFIG", str(TINY))
    monkeypatch.setenv("NEUDEP_DATA", str(data))
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(["cluster-demo", "--scheduler", address])
    assert address in str(e.value.code) and "no Dask scheduler answers" in str(e.value.code)
    assert "--scheduler" in str(e.value.code) and "waited 0.5 s" in str(e.value.code)
    assert time.perf_counter() - t0 < 20
    assert not data.exists()

    cfg = tmp_path / "dask.yaml"
    cfg.write_text(TINY.read_text() + f"executor: {{kind: dask, scheduler: '{address}'}}\n")
    root = tmp_path / "root"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TINY.parents[1]), os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "dagster").mkdir()
    t0 = time.perf_counter()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        with pytest.raises((PipelineError, ConnectionError)) as e:
            run_pipeline(cfg, root, instance=instance, log=lambda *_: None)
    assert time.perf_counter() - t0 < 60
    assert f"no Dask scheduler answers at {address!r} (executor.scheduler" in str(e.value) + capsys.readouterr().err
    assert not list((root / "store").rglob("*.parquet")) and not (root / "artifacts").exists()


def test_store_comparison_ignores_measured_times_only(tmp_path):
    """§3.2 stores its timing details in config_json and two timed columns: two runs of the same work differ
    there (the default graph's cluster demo did) and nowhere else; any other config value still counts."""
    import json

    from neudep_assets.cluster import store_differences
    from neudep_assets.lib.store import ResultStore

    def row(timing: float, lr: float, cached: float) -> dict:
        return {"result_id": "r", "method": "theta_head", "epoch_seconds_cached": cached, "time_ratio_cached": cached,
                "config_json": json.dumps({"lr": lr, "timing": {"base_forward_seconds": timing}})}
    stores = {}
    for name, r in (("a", row(1.0, 0.1, 0.2)), ("b", row(2.0, 0.1, 0.3)), ("c", row(1.0, 0.2, 0.2))):
        stores[name] = ResultStore(tmp_path / name)
        stores[name].write("incremental_results", "r", [r], run_id=name, code_version="v")
    assert store_differences(stores["a"], stores["b"]) == []
    assert store_differences(stores["a"], stores["c"]) == ["incremental_results.config_json differs"]
