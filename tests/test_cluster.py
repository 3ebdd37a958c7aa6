"""The tiny graph on a real Dask cluster (scheduler + two workers on 127.0.0.1, dagster-dask) gives
the same store as the default executor."""

import contextlib
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from neudep_assets.cli import run_pipeline
from neudep_assets.cluster import local_dask_cluster, store_differences
from neudep_assets.lib.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("tiny.yaml")


@contextlib.contextmanager
def _one_thread():
    """torch and BLAS on one thread in this process. A float32 forward pass on another thread count gives
    other last bits (the tiny CNN's logits: ≈ 2e-7 relative), and the tiny CNN's C is rank-deficient,
    which amplifies them past the comparison's tolerance in err0 and small coefficients (seen when the
    machine was loaded); with the workers' thread count the two stores hold the same numbers."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def test_tiny_graph_on_a_dask_cluster_equals_the_default_executor(tmp_path):
    default_root, dask_root = tmp_path / "default", tmp_path / "dask"
    t0 = time.perf_counter()
    with _one_thread():  # as the Dask workers (OMP_NUM_THREADS=1 below): the same bits, see _one_thread
        run_pipeline(TINY, default_root, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    t_default = time.perf_counter() - t0
    shutil.copytree(default_root / "checkpoints", dask_root / "checkpoints")  # trained once: same weights
    cfg = tmp_path / "tiny-dask.yaml"
    env = {"NEUDEP_CONFIG": str(cfg), "NEUDEP_DATA": str(dask_root), "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    with local_dask_cluster(2, env) as address:
        # the CovLasso of each model and pair split into target chunks, each a step of its own on the workers
        cfg.write_text(TINY.read_text().replace("dependencies:\n", "dependencies:\n  chunk_steps: 3\n")
                       + f"executor: {{kind: dask, scheduler: '{address}'}}\n")
        (tmp_path / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
            t0 = time.perf_counter()
            ran = run_pipeline(cfg, dask_root, instance=instance, log=lambda *_: None)
            t_dask = time.perf_counter() - t0
            runs = instance.get_runs()
            assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            assert {r.tags.get("dagster/partition") for r in runs} >= {"cnn", "vit", "cnn|vit", "vit|cnn"}
            steps = {e.step_key for r in runs for e in instance.all_logs(r.run_id)
                     if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"}
            assert {f"{a}.dependency_chunk_{k}" for a in ("dependencies", "between_dependencies")
                    for k in range(3)} <= steps, sorted(s for s in steps if "chunk" in s)
    assert ("comparisons_job", None, ["comparisons"]) in ran
    # the same rows; only the recorded effective config says how the CovLasso was split
    assert store_differences(dask_root, default_root) == ["dependency_runs.config_json differs"]
    steps = ResultStore(dask_root).query("SELECT DISTINCT json_extract(config_json, '$.chunk_steps') AS c "
                                         "FROM dependency_runs")
    assert steps["c"].astype(int).tolist() == [3]
    print(f"tiny graph: default executor {t_default:.1f}s (with training), dask {t_dask:.1f}s")
