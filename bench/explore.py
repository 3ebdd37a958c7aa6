"""Time to first paint and to a drawn star / graph in `neudep explore`, on synthetic stores of n classes.

    .venv/bin/python bench/explore.py --n 1000 21841

For each n: a store with one within analysis (5 λ, every class a target, ~`--sources` sources each), the
explorer started as `neudep explore` in a subprocess, Chromium (playwright, /usr/bin/chromium) opening the
class page and the model page. Prints first contentful paint, time until the star / the graph is drawn,
the bytes each page transferred, and the server's peak RSS; "cold" is the server's first visit of the page
(views built, caches empty), "warm" a second visit."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neudep_assets.lib.store import ResultStore  # noqa: E402

LAMBDAS = [0.5, 0.2, 0.1, 0.05, 0.02]


def synthetic_store(root: Path, n: int, sources: int, seed: int = 0) -> ResultStore:
    """A store with one within analysis of n classes: sources per target grow as λ falls."""
    rng = np.random.default_rng(seed)
    store = ResultStore(root)
    store.write("classes", "d", pd.DataFrame({"dataset_id": "d", "class_index": np.arange(n),
                                              "name": [f"class {i}" for i in range(n)]}), run_id="b", code_version="b")
    sha = "ab" * 32
    store.write("checkpoints", sha, [{"checkpoint_sha256": sha, "model": "big", "dataset_id": "d"}],
                run_id="b", code_version="b")
    edges, metrics = [], []
    for li, lam in enumerate(LAMBDAS):
        k = rng.poisson(max(1, sources * (li + 1) / len(LAMBDAS)), n).clip(0, n - 1)
        tgt = np.repeat(np.arange(n), k)
        src = (tgt + 1 + rng.integers(0, n - 1, len(tgt))) % n
        edges.append(pd.DataFrame({"lambda_index": li, "target_class": tgt, "source_class": src,
                                   "coef": rng.normal(0, 0.3, len(tgt))}).drop_duplicates(["target_class", "source_class"]))
        metrics.append(pd.DataFrame({"lambda_index": li, "target_class": np.arange(n), "lambda_abs": lam,
                                     "lambda_max": 1.0, "kkt": 1e-12, "n_sources": k, "abs_err": 0.1,
                                     "rel_err": rng.uniform(0.01, 0.5, n), "acc": 0.9, "orig_acc": 0.9,
                                     "pos_acc": 0.8, "orig_pos_acc": 0.9, "n_pos": 5}))
    key = f"within-big{n}"
    runs = [{"dependency_run_id": key, "kind": "within", "lambda_index": li, "lambda_rel": lam, "lambda_value": lam,
             "lambda_mode": "relative", "model": "big", "checkpoint_sha256": sha, "source_model": "big",
             "source_checkpoint_sha256": sha, "dataset_id": "d", "logit_gauge": "raw"} for li, lam in enumerate(LAMBDAS)]
    store.commit_analysis(key, {"dependency_runs": runs,
                                "dependencies": pd.concat(edges).assign(dependency_run_id=key),
                                "dependency_metrics": pd.concat(metrics).assign(dependency_run_id=key),
                                "class_diagnostics": pd.DataFrame({"dependency_run_id": key, "target_class": np.arange(n)})},
                          run_id="b", code_version="b")
    return store


def measure(root: Path, n: int, model: str = "big", target: int | None = None) -> list[dict]:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NEUDEP_DATA": str(root), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    srv = subprocess.Popen([sys.executable, "-m", "neudep_assets.cli", "explore", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            target = n // 2 if target is None else target
            pages = (("class page", f"/class/{model}/{target}", "document.querySelectorAll('#sources tbody tr').length > 0"),
                     ("model page", f"/model/{model}", "document.getElementById('graph').dataset.edges !== undefined"))
            for visit, (name, url, ready) in [("cold", p) for p in pages] + [("warm", p) for p in pages]:
                page = browser.new_page()
                sizes = []
                page.on("requestfinished", lambda r, sizes=sizes: sizes.append(r.sizes()["responseBodySize"]))
                t0 = time.perf_counter()
                page.goto(base + url)
                page.wait_for_function(ready, timeout=120_000, polling=50)
                drawn = time.perf_counter() - t0
                fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
                info = page.evaluate("document.getElementById('graph')?.dataset.edges ?? ''")
                rows.append({"n": n, "page": name, "visit": visit, "first paint ms": round(fcp), "drawn s": round(drawn, 2),
                             "transferred kB": round(sum(sizes) / 1024), "graph edges shown": info})
                page.close()
            browser.close()
        status = Path(f"/proc/{srv.pid}/status").read_text()
        hwm = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
        for r in rows:
            r["server peak RSS MB"] = round(int(hwm) / 1024)
        return rows
    finally:
        srv.terminate()
        srv.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 21841])
    ap.add_argument("--sources", type=int, default=20, help="mean sources per target at the smallest λ")
    ap.add_argument("--data", help="measure an existing data root instead (e.g. the default demo's data/)")
    ap.add_argument("--model", default="vit", help="with --data: the model whose pages are opened")
    ap.add_argument("--target", type=int, default=532, help="with --data: the class page's class")
    args = ap.parse_args()
    if args.data:
        n = len(ResultStore(args.data).query("SELECT DISTINCT target_class FROM dependency_metrics"))
        print(pd.DataFrame(measure(Path(args.data), n, args.model, args.target)).to_string(index=False))
        return
    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            synthetic_store(Path(tmp), n, args.sources)
            print(f"[bench] store of {n} classes written in {time.perf_counter() - t0:.1f}s", flush=True)
            rows += measure(Path(tmp), n)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
