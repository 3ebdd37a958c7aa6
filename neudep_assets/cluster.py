"""`neudep cluster-demo`: the same graph on a Dask cluster (scheduler + workers on 127.0.0.1, as
separate processes) and with the default executor, and a comparison of the two result stores."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_dask_cluster(n_workers: int = 2, env: dict | None = None, timeout: float = 300, log_dir: Path | None = None):
    """Start `dask scheduler` and `n_workers` `dask worker` processes (one thread each) on 127.0.0.1;
    yields the scheduler address. The workers load the code location from `env` (NEUDEP_CONFIG,
    NEUDEP_DATA, PYTHONPATH); their logs go to `log_dir` if given. Everything is stopped on exit."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **(env or {})}
    py = [sys.executable, "-m"]
    logs = []

    def out(name):
        if log_dir is None:
            return subprocess.DEVNULL
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        logs.append(open(Path(log_dir) / f"{name}.log", "wb"))
        return logs[-1]

    procs = [subprocess.Popen(py + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                                    "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=out("scheduler"))]
    try:
        procs += [subprocess.Popen(py + ["distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
                                         "--host", "127.0.0.1", "--name", f"neudep-worker-{i}"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=out(f"worker-{i}"))
                  for i in range(n_workers)]
        with Client(address, timeout=timeout) as client:
            client.wait_for_workers(n_workers, timeout=timeout)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for fh in logs:
            fh.close()


#: columns that differ between two runs of the same work: provenance, locations, wall-clock times
VOLATILE = {"dagster_run_id", "written_at", "path", "train_seconds", "epoch_seconds", "baseline_epoch_seconds",
            "time_ratio", "epoch_seconds_cached", "time_ratio_cached"}
#: keys of a `config_json` that hold measured times, not configuration (§3.2's timing details)
VOLATILE_JSON_KEYS = {"timing"}


def _without_times(text):
    """A config_json with its measured times left out (other values as they are)."""
    import json

    try:
        d = json.loads(text)
    except (TypeError, ValueError):
        return text
    return json.dumps({k: v for k, v in d.items() if k not in VOLATILE_JSON_KEYS}, sort_keys=True) \
        if isinstance(d, dict) else text


def store_differences(a, b, rtol: float = 0.0, atol: float = 0.0, *, detail: bool = False) -> list[str]:
    """How two result stores (data roots or `ResultStore`s) differ, table by table (empty: the same
    rows). Every column but the :data:`VOLATILE` ones (and a config_json's measured times) is compared: identities (checkpoint and logit
    sha256, content-addressed ids) exactly, numbers within ``rtol``/``atol`` (default: bit for bit;
    NaN equals NaN). ``detail``: each line also says in how many rows, and for numbers the largest
    relative difference."""
    import numpy as np
    import pandas as pd

    from neudep_assets.lib.store import TABLES, ResultStore
    from neudep_assets.lib.store_sandbox import run_query

    sa, sb = (s if isinstance(s, ResultStore) else ResultStore(s) for s in (a, b))
    out = []
    with sa.connect() as ca, sb.connect() as cb:  # one sandbox per store, not one per table
        frames = {t: (run_query(ca, f"SELECT * FROM {t}", None), run_query(cb, f"SELECT * FROM {t}", None))
                  for t in TABLES}
    for table, (x, y) in frames.items():
        for d in (x, y):
            if "config_json" in d:
                d["config_json"] = d["config_json"].map(_without_times)
        cols = [c for c in x.columns if c not in VOLATILE]
        if len(x) != len(y):
            out.append(f"{table}: {len(x)} vs {len(y)} rows")
            continue
        keys = [c for c in cols if not pd.api.types.is_float_dtype(x[c])]
        x, y = (d.sort_values(keys, kind="stable").reset_index(drop=True) for d in (x, y))
        for c in cols:
            if c in keys:
                u, v = x[c].astype(str).where(x[c].notna(), None), y[c].astype(str).where(y[c].notna(), None)
                bad = ~((u == v) | (u.isna() & v.isna()))
                what = ""
            else:
                u, v = x[c].to_numpy(float), y[c].to_numpy(float)
                bad = ~np.isclose(u, v, rtol=rtol, atol=atol, equal_nan=True)
                scale = np.maximum(np.abs(u), np.abs(v))[bad]
                gap = np.abs(u - v)[bad]
                rel = np.where(scale > 0, gap / np.where(scale > 0, scale, 1), gap)
                what = f", largest relative difference {np.nanmax(rel):.1e}" if bad.any() and np.isfinite(rel).any() else ""
            if bad.any():
                out.append(f"{table}.{c} differs" + (f" ({int(bad.sum())} of {len(x)} rows{what})" if detail else ""))
    return out


@dataclass
class DemoResult:
    """What `run_cluster_demo` found: the stores' differences (empty: equal), both runs' seconds, the
    steps that succeeded on the Dask cluster and the Dask runs' statuses."""
    differences: list[str]
    dask_seconds: float
    default_seconds: float
    dask_steps: set[str]
    dask_run_statuses: list[str]
    address: str


def run_cluster_demo(config: Path, base: Path, *, scheduler: str | None = None, log=print) -> DemoResult:
    """The config's graph on a Dask cluster (two one-thread workers started on 127.0.0.1, or the
    existing ``scheduler``) into ``base/dask``, then in this process (Dagster's in-process executor)
    into ``base/default``; each run trains its own checkpoints. ``base`` is replaced; an existing
    scheduler that does not answer fails first, with nothing written."""
    import dagster as dg

    from neudep_assets.cli import run_pipeline
    from neudep_assets.defs.executors import check_scheduler

    config, base = Path(config).resolve(), Path(base).resolve()
    if scheduler:
        check_scheduler(scheduler, origin="--scheduler")
    dask_root, default_root, dask_cfg = base / "dask", base / "default", base / "dask.yaml"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    env = {"NEUDEP_CONFIG": str(dask_cfg), "NEUDEP_DATA": str(dask_root),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    cluster = contextlib.nullcontext(scheduler) if scheduler else local_dask_cluster(2, env, log_dir=base / "logs")
    with cluster as address:
        log(f"[neudep] Dask scheduler {address}; workers load NEUDEP_CONFIG={dask_cfg} NEUDEP_DATA={dask_root}")
        dask_cfg.write_text(config.read_text() + f"\nexecutor: {{kind: dask, scheduler: '{address}'}}\n")
        (base / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(base / "dagster")) as instance:
            t0 = time.perf_counter()
            run_pipeline(dask_cfg, dask_root, instance=instance, log=log)
            t_dask = time.perf_counter() - t0
            runs = instance.get_runs()
            steps = {e.step_key for r in runs for e in instance.all_logs(r.run_id)
                     if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"}
            statuses = [r.status.value for r in runs]
    t0 = time.perf_counter()
    run_pipeline(config, default_root, instance=dg.DagsterInstance.ephemeral(), log=log, executor="in_process")
    t_default = time.perf_counter() - t0
    return DemoResult(store_differences(dask_root, default_root, detail=True), t_dask, t_default, steps, statuses,
                      address)


def wait_for(predicate, timeout: float, every: float = 1.0) -> float:
    """Seconds until `predicate()` holds (TimeoutError after `timeout`)."""
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"not done after {timeout:.0f}s")
        time.sleep(every)
    return time.perf_counter() - t0
