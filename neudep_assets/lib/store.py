"""The result store: Parquet files are the source of truth, `neudep.duckdb` a catalog of views.

Layout under the data root::

    store/<table>/<key>.parquet   one file per content-addressed key, written whole to a temp
                                  name and renamed into place (rewriting a key never duplicates rows)
    artifacts/<kind>/<key>.npz    arrays (logits, moments), same atomic write
    neudep.duckdb                 views over store/ from sql/schema.sql

Runs never open the DuckDB file for writing except to (re)create the catalog, so readers and
runs do not block each other.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 2  # 2: views checkpoints_current, dependencies_current (issue 10)
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_PROVENANCE = [("dagster_run_id", _S), ("code_version", _S), ("written_at", pa.timestamp("us", tz="UTC"))]

TABLES: dict[str, pa.Schema] = {
    name: pa.schema(cols + _PROVENANCE)
    for name, cols in {
        "datasets": [("dataset_id", _S), ("kind", _S), ("n_classes", _I), ("n_train", _I), ("n_val", _I),
                     ("n_ood", _I), ("params_json", _S)],
        "classes": [("dataset_id", _S), ("class_index", _I), ("name", _S), ("label", _S)],
        "checkpoints": [("checkpoint_sha256", _S), ("model", _S), ("arch", _S), ("origin", _S), ("source", _S),
                        ("parent_sha256", _S), ("path", _S), ("dataset_id", _S), ("num_classes", _I),
                        ("num_features", _I), ("n_params", _I), ("train_val_acc", _F), ("train_seconds", _F),
                        ("config_json", _S)],
        "logit_sets": [("logit_set_id", _S), ("checkpoint_sha256", _S), ("model", _S), ("dataset_id", _S),
                       ("split", _S), ("n_samples", _I), ("n_classes", _I), ("logits_sha256", _S),
                       ("samples_sha256", _S), ("accuracy", _F), ("path", _S)],
        "moments": [("moments_id", _S), ("kind", _S), ("model", _S), ("checkpoint_sha256", _S),
                    ("target_model", _S), ("target_checkpoint_sha256", _S), ("dataset_id", _S), ("split", _S),
                    ("n_samples", _I), ("n_classes", _I), ("rank", _I), ("min_eig", _F), ("max_eig", _F),
                    ("path", _S)],
        "dependency_runs": [("dependency_run_id", _S), ("kind", _S), ("lambda_index", _I), ("lambda_rel", _F),
                            ("lambda_value", _F), ("lambda_mode", _S), ("model", _S), ("checkpoint_sha256", _S),
                            ("source_model", _S), ("source_checkpoint_sha256", _S), ("dataset_id", _S),
                            ("fit_split", _S), ("eval_split", _S), ("moments_id", _S), ("solver", _S),
                            ("tol", _F), ("max_kkt", _F), ("n_targets", _I), ("config_json", _S)],
        "dependencies": [("dependency_run_id", _S), ("lambda_index", _I), ("target_class", _I),
                         ("source_class", _I), ("coef", _F)],
        "dependency_metrics": [("dependency_run_id", _S), ("lambda_index", _I), ("target_class", _I),
                               ("lambda_abs", _F), ("lambda_max", _F), ("kkt", _F), ("n_sources", _I),
                               ("abs_err", _F), ("rel_err", _F), ("acc", _F), ("orig_acc", _F), ("pos_acc", _F),
                               ("orig_pos_acc", _F), ("n_pos", _I), ("fit_err", _F), ("n_candidates", _I),
                               ("n_nonzero", _I), ("thm3_screened", _I),
                               ("thm3_violations", _I), ("conj1_screened", _I), ("conj1_violations", _I)],
        "class_diagnostics": [("dependency_run_id", _S), ("target_class", _I), ("err0", _F), ("rel_err0", _F),
                              ("rank", _I), ("eq5_violations", _I), ("eq5_max_violation", _F)],
        "comparisons": [("comparison_id", _S), ("kind", _S), ("model", _S), ("source_model", _S),
                        ("lambda_rel", _F), ("metric", _S), ("value", _F), ("detail", _S)],
    }.items()
}


class StoreError(RuntimeError):
    pass


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file whole or not at all: ``write(fh)`` fills a temporary file beside ``path``, which is
    fsynced and renamed into place (then the folder is fsynced), so a reader or a crash never sees
    half a file. The one atomic writer of the project (store, datasets, graphs, Dagster pointers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_arrays(path: Path, **arrays: np.ndarray) -> Path:
    """Atomic `np.savez` (no pickled objects: object arrays are refused)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; store strings as a fixed-width unicode array")

    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Load an artifact written by `save_arrays`; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"artifact missing: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/ValueError/OSError on a truncated or foreign file
        raise StoreError(f"artifact unreadable (corrupt or truncated?): {path}: {exc}") from exc


class ResultStore:
    """Content-addressed Parquet tables and array artifacts under one data root."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.tables_dir = self.root / "store"
        self.artifacts_dir = self.root / "artifacts"
        self.catalog_path = self.root / "neudep.duckdb"

    # -- tables -----------------------------------------------------------------------------
    def table_file(self, table: str, key: str) -> Path:
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}")
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise StoreError(f"bad store key {key!r}")
        return self.tables_dir / table / f"{key}.parquet"

    def has(self, table: str, key: str) -> bool:
        return self.table_file(table, key).is_file()

    def write(self, table: str, key: str, rows: pd.DataFrame | Iterable[dict[str, Any]], *,
              run_id: str, code_version: str) -> Path:
        """Write all rows of one key as one Parquet file (replacing an earlier file of that key)."""
        schema = TABLES[table]
        df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
        df["dagster_run_id"] = run_id
        df["code_version"] = code_version
        df["written_at"] = pd.Timestamp.now(tz="UTC")
        missing = [f.name for f in schema if f.name not in df.columns]
        extra = [c for c in df.columns if c not in schema.names]
        if extra:
            raise StoreError(f"table {table}: unexpected columns {extra}")
        for name in missing:
            df[name] = None
        tbl = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
        path = self.table_file(table, key)
        atomic_write(path, lambda fh: pq.write_table(tbl, fh))
        return path

    def read(self, table: str, key: str) -> pd.DataFrame:
        path = self.table_file(table, key)
        if not path.is_file():
            raise StoreError(f"no {table} rows for key {key!r} ({path})")
        return pq.read_table(path).to_pandas()

    # -- artifacts --------------------------------------------------------------------------
    def artifact(self, kind: str, key: str) -> Path:
        return self.artifacts_dir / kind / f"{key}.npz"

    def save_png(self, run_key: str, name: str, png: bytes) -> Path:
        """A picture belonging to one analysis: artifacts/plots/<run_key>/<name>.png (atomic)."""
        path = self.artifacts_dir / "plots" / run_key / f"{name}.png"
        atomic_write(path, lambda fh: fh.write(png))
        return path

    # -- catalog ----------------------------------------------------------------------------
    def ensure_catalog(self, *, force: bool = False) -> Path:
        """Create `neudep.duckdb` (views over the Parquet files) if missing or of an older schema."""
        import duckdb

        for table, schema in TABLES.items():
            empty = self.tables_dir / table / "_empty.parquet"
            if not empty.is_file():
                atomic_write(empty, lambda fh, s=schema: pq.write_table(s.empty_table(), fh))
        if self.catalog_path.is_file() and not force:
            try:
                with duckdb.connect(str(self.catalog_path), read_only=True) as con:
                    version = con.execute("SELECT version FROM neudep_schema").fetchone()[0]
                if version == SCHEMA_VERSION:
                    return self.catalog_path
            except duckdb.Error:
                pass
        sql = (SQL_DIR / "schema.sql").read_text()
        store = str(self.tables_dir).replace("'", "''")
        tmp = self.catalog_path.with_name(f".neudep.{os.getpid()}.{time.time_ns()}.duckdb")
        with duckdb.connect(str(tmp)) as con:
            con.execute(sql.replace("{{STORE}}", store))
            con.execute("CREATE OR REPLACE TABLE neudep_schema AS SELECT ?::INTEGER AS version", [SCHEMA_VERSION])
        os.replace(tmp, self.catalog_path)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
        return self.catalog_path

    def query(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pd.DataFrame:
        """Run a read-only query on the catalog (parameters bound by DuckDB, never pasted)."""
        import duckdb

        self.ensure_catalog()
        with duckdb.connect(str(self.catalog_path), read_only=True) as con:
            return con.execute(sql, params or []).df() if params else con.sql(sql).df()
