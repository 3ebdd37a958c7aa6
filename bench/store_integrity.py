"""What manifests and `neudep check` cost on a large store: a synthetic store of `--analyses` analyses,
each of `--classes` targets × `--lambdas` λ with `--sources` sources per target (the tables an asset
commits, with realistic columns), committed through `ResultStore.commit_analysis`.

Prints: the commit time, the part of it that is the manifest (sha256 of every file and the manifest's
own atomic write) and the page checksums, `neudep check` (every byte hashed, footers, schemas), the
cheap checks of `has_analysis`, and one cookbook query.

    python bench/store_integrity.py --classes 1000 --lambdas 5 --sources 20 --analyses 4
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from neudep_assets.lib.files import write_folder
from neudep_assets.lib.store import TABLES, ResultStore, _arrow
from neudep_assets.lib.store_manifest import MARKER, analysis_manifest, describe, parquet_bytes

SQL = Path(__file__).resolve().parents[1] / "sql" / "queries"


def analysis(key: str, n: int, lambdas: int, sources: int, rng) -> dict[str, pd.DataFrame]:
    lam = np.concatenate([[0.5, 0.3, 0.1, 0.05, 0.01], np.geomspace(0.009, 0.001, max(lambdas - 5, 0))])[:lambdas]
    t = np.repeat(np.arange(n), sources)
    deps = pd.concat([pd.DataFrame({"dependency_run_id": key, "lambda_index": li, "target_class": t,
                                    "source_class": (t + 1 + rng.integers(0, n - 1, t.size)) % n,
                                    "coef": rng.normal(size=t.size)}) for li in range(lambdas)])
    floats = [f.name for f in TABLES["dependency_metrics"] if str(f.type) == "double"]
    ints = [f.name for f in TABLES["dependency_metrics"] if str(f.type) == "int64" and f.name not in
            ("lambda_index", "target_class")]
    metrics = pd.concat([pd.DataFrame({"dependency_run_id": key, "lambda_index": li, "target_class": np.arange(n),
                                       **{c: rng.random(n) for c in floats},
                                       **{c: rng.integers(0, sources, n) for c in ints}}) for li in range(lambdas)])
    runs = pd.DataFrame({"dependency_run_id": key, "kind": "within", "lambda_index": range(lambdas), "lambda_rel": lam,
                         "lambda_value": lam, "lambda_mode": "relative", "model": f"m{key}", "source_model": f"m{key}",
                         "checkpoint_sha256": hashlib.sha256(key.encode()).hexdigest(), "dataset_id": "d",
                         "solver": "homotopy", "tol": 1e-6, "max_kkt": 1e-8, "n_targets": n, "logit_gauge": "raw"})
    diag = pd.DataFrame({"dependency_run_id": key, "target_class": np.arange(n), "err0": rng.random(n),
                         "rel_err0": rng.random(n), "rank": n, "eq5_violations": 0, "eq5_max_violation": 0.0})
    return {"dependency_runs": runs, "dependencies": deps, "dependency_metrics": metrics, "class_diagnostics": diag}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--lambdas", type=int, default=5)
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--analyses", type=int, default=4)
    ap.add_argument("--root", help="where to build the store (default: a temporary folder)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        store = ResultStore(tmp)
        store.write("classes", "d", [{"dataset_id": "d", "class_index": i, "name": f"class {i}"}
                                     for i in range(args.classes)], run_id="r", code_version="v")
        commits, manifests, crcs = [], [], []
        for a in range(args.analyses):
            key = f"within-{a:04d}"
            tables = analysis(key, args.classes, args.lambdas, args.sources, rng)
            t0 = time.perf_counter()
            store.commit_analysis(key, tables, run_id="r", code_version="v")
            commits.append(time.perf_counter() - t0)
            frames = {t: _arrow(t, rows, "r", "v") for t, rows in tables.items()}
            blobs = {f"{t}.parquet": parquet_bytes(f) for t, f in frames.items()}
            hashing = []
            for _ in range(5):
                t0 = time.perf_counter()
                files = {t: describe(blobs[f"{t}.parquet"], f.num_rows) for t, f in frames.items()}  # the hashes
                manifest = analysis_manifest(key, files)
                hashing.append(time.perf_counter() - t0)
            t_hash = min(hashing)
            plain, with_manifest = [], []  # the staging write without and with the manifest, alternated
            for rep in range(5):
                for extra, out in (({}, plain), ({MARKER: manifest}, with_manifest)):
                    folder = Path(tmp) / f"scratch-{a}-{rep}-{len(extra)}"
                    folder.mkdir()
                    t0 = time.perf_counter()
                    write_folder(folder, {**blobs, **extra})
                    out.append(time.perf_counter() - t0)
            manifests.append(t_hash + max(0.0, min(with_manifest) - min(plain)))
            with_crc, without = [], []
            for _ in range(5):
                for crc, out in ((True, with_crc), (False, without)):
                    t0 = time.perf_counter()
                    for f in frames.values():
                        pq.write_table(f, io.BytesIO(), write_page_checksum=crc)
                    out.append(time.perf_counter() - t0)
            crcs.append(min(with_crc) - min(without))
        size = sum(p.stat().st_size for p in Path(tmp, "store").rglob("*.parquet") if "scratch" not in str(p))
        rows = sum(pq.read_metadata(p).num_rows for p in Path(tmp, "store").rglob("*.parquet"))  # noqa: E501
        c, m, k = min(commits), min(manifests), min(crcs)
        print(f"store: {args.analyses} analyses of {args.classes} targets × {args.lambdas} λ × {args.sources} "
              f"sources; {rows:,} rows, {size / 1e6:.1f} MB of Parquet")
        print(f"commit_analysis: {c * 1e3:.0f} ms per analysis (fastest of {len(commits)}); manifest (sha256 of every file, and "
              f"its write in the staging folder: with minus without) {m * 1e3:.1f} ms = {100 * m / c:.1f}%; page checksums {k * 1e3:.1f} ms = {100 * k / c:.1f}%")
        t0 = time.perf_counter()
        bad = store.check()
        t_check = time.perf_counter() - t0
        t0 = time.perf_counter()
        strays = store.strays()
        t_strays = time.perf_counter() - t0
        print(f"neudep check: {t_check:.2f} s (sha256, rows, Parquet footer and schema of "
              f"{len(store._committed())} files), {bad and 'DAMAGED' or 'ok'}; "
              f"unlisted files: {len(strays)} in {t_strays * 1e3:.0f} ms")
        t0 = time.perf_counter()
        assert all(store.has_analysis(f"within-{a:04d}") for a in range(args.analyses))
        print(f"has_analysis (cheap: size, footer, rows, schema): {(time.perf_counter() - t0) / args.analyses * 1e3:.1f} "
              f"ms per analysis")
        t0 = time.perf_counter()
        store.ensure_catalog()
        t_new = time.perf_counter() - t0
        store.write("classes", "e", [{"dataset_id": "e", "class_index": 0}], run_id="r", code_version="v")
        t0 = time.perf_counter()
        store.ensure_catalog()
        print(f"neudep.duckdb: created in {t_new:.2f} s, brought up to date after a write in "
              f"{time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        share = store.query((SQL / "dependency_share.sql").read_text())
        print(f"dependency_share.sql in the sandbox: {time.perf_counter() - t0:.2f} s ({len(share)} rows)")


if __name__ == "__main__":
    main()
