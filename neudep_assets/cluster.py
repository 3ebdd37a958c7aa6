"""A Dask cluster on this machine (scheduler + workers on 127.0.0.1, as separate processes), and a
comparison of two result stores: what `neudep cluster-demo` and the cluster test use."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
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


#: provenance and location columns differ between two runs of the same work; `logits_sha256` is a
#: bitwise digest of float32 logits, which differ in the last bits between processes (BLAS paths)
VOLATILE = {"dagster_run_id", "written_at", "path", "logits_sha256"}


def store_differences(a, b, rtol: float = 1e-5, atol: float = 1e-9) -> list[str]:
    """How two result stores (data roots or `ResultStore`s) differ, table by table (empty: the same rows). Numbers are compared with
    a relative tolerance (float32 logits computed in two processes differ in their last bits);
    run ids, timestamps, paths and bitwise digests of logits are left out."""
    import numpy as np
    import pandas as pd

    from neudep_assets.lib.store import TABLES, ResultStore

    sa, sb = (s if isinstance(s, ResultStore) else ResultStore(s) for s in (a, b))
    out = []
    for table in TABLES:
        x, y = sa.query(f"SELECT * FROM {table}"), sb.query(f"SELECT * FROM {table}")
        cols = [c for c in x.columns if c not in VOLATILE]
        if len(x) != len(y):
            out.append(f"{table}: {len(x)} vs {len(y)} rows")
            continue
        keys = [c for c in cols if not pd.api.types.is_float_dtype(x[c])]
        x, y = (d.sort_values(keys, kind="stable").reset_index(drop=True) for d in (x, y))
        for c in cols:
            if c in keys:
                same = (x[c].isna() == y[c].isna()).all() and (x[c].dropna().astype(str) == y[c].dropna().astype(str)).all()
            else:
                same = np.allclose(x[c].astype(float), y[c].astype(float), rtol=rtol, atol=atol, equal_nan=True)
            if not same:
                out.append(f"{table}.{c} differs")
    return out


def wait_for(predicate, timeout: float, every: float = 1.0) -> float:
    """Seconds until `predicate()` holds (TimeoutError after `timeout`)."""
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"not done after {timeout:.0f}s")
        time.sleep(every)
    return time.perf_counter() - t0
