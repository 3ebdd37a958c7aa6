"""The result store: Parquet files are the source of truth, `neudep.duckdb` a catalog of views.

Layout under the store root (the data root, or any fsspec URL: config `store:` / NEUDEP_STORE)::

    store/<table>/<key>.parquet        one file per content-addressed key, written whole (local: temp
                                       name renamed into place; elsewhere: one put)
    store/analyses/<key>/<table>.parquet  one committed analysis: local, written under store/.staging/
                                       and renamed in one step; remote, one put per table, then the
                                       marker _COMMITTED.json last (see store_objects)
    artifacts/<kind>/<key>.npz         arrays (logits, moments), same whole write; artifacts/plots/

On the local data root whatever the store root: store/.locks/ (fcntl, one writer per key: per
machine on a remote root) and neudep.duckdb (views for users; local store roots only). Every view
reads committed files only. Runs and `query` never open `neudep.duckdb` (views built in memory, a
remote root's fsspec file system registered in DuckDB): a user holding it never blocks a run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neudep_assets.lib.files import StoreError, _fsync_dir, atomic_write, is_remote, load_arrays, put_whole, save_arrays
from neudep_assets.lib.store_objects import (MARKER, StoreWarning, catalog_sql, check_key as _check_key,
                                             commit_with_marker, file_lock, marker_tables, open_location, parquet_problem, remote_committed, sql_str, verify_location,
                                             write_catalog)

__all__ = ["TABLES", "ResultStore", "StoreError", "StoreWarning", "atomic_write", "load_arrays", "put_whole",
           "save_arrays"]

SCHEMA_VERSION = 6  # part of the catalog version (with sql/schema.sql and the root); 3: logit gauge, logit_stats;
#                    4: §3.2 / §3.3 tables; 5: views checkpoints_current, dependencies_current; 6: path tables
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_KNOT = [("dependency_run_id", _S), ("target_class", _I), ("knot", _I)]  # a knot of a target's exact path
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
                            ("tol", _F), ("max_kkt", _F), ("n_targets", _I), ("config_json", _S),
                            ("logit_gauge", _S)],
        "dependencies": [("dependency_run_id", _S), ("lambda_index", _I), ("target_class", _I),
                         ("source_class", _I), ("coef", _F)],
        "dependency_metrics": [("dependency_run_id", _S), ("lambda_index", _I), ("target_class", _I),
                               ("lambda_abs", _F), ("lambda_max", _F), ("kkt", _F), ("n_sources", _I),
                               ("abs_err", _F), ("rel_err", _F), ("acc", _F), ("orig_acc", _F), ("pos_acc", _F),
                               ("orig_pos_acc", _F), ("n_pos", _I), ("fit_err", _F), ("n_candidates", _I),
                               ("n_nonzero", _I), ("thm3_screened", _I),
                               ("thm3_violations", _I), ("conj1_screened", _I), ("conj1_violations", _I),
                               ("abs_err_refit", _F), ("rel_err_refit", _F), ("acc_refit", _F),
                               ("pos_acc_refit", _F), ("fit_err_refit", _F), ("fit_rel_err", _F),
                               ("offset_dir_share", _F)],
        "dependency_path_knots": _KNOT + [("lambda_abs", _F), ("lambda_rel", _F), ("n_sources", _I), ("fit_err", _F),
                                          ("fit_rel_err", _F), ("seg_curv", _F), ("exact", _B)],  # lib/covlasso/path.py
        "dependency_path": _KNOT + [("source_class", _I), ("coef", _F)],
        "class_diagnostics": [("dependency_run_id", _S), ("target_class", _I), ("err0", _F), ("rel_err0", _F),
                              ("rank", _I), ("eq5_violations", _I), ("eq5_max_violation", _F)],
        "comparisons": [("comparison_id", _S), ("kind", _S), ("model", _S), ("source_model", _S),
                        ("lambda_rel", _F), ("metric", _S), ("value", _F), ("detail", _S), ("logit_gauge", _S)],
        "logit_stats": [("logit_set_id", _S), ("checkpoint_sha256", _S), ("model", _S), ("dataset_id", _S),
                        ("split", _S), ("n_samples", _I), ("n_classes", _I), ("mean_logit_mean", _F),
                        ("mean_logit_std", _F), ("within_sample_std", _F), ("offset_share", _F),
                        ("top_logit_mean", _F), ("top_minus_mean", _F)],
        "incremental_results": [("result_id", _S), ("model", _S), ("checkpoint_sha256", _S), ("dataset_id", _S),
                                ("setting", _S), ("split_seed", _I), ("seed", _I), ("method", _S), ("base_origin", _S),
                                ("base_checkpoint_sha256", _S), ("baseline_checkpoint_sha256", _S), ("n_base", _I),
                                ("n_new", _I), ("l1", _F), ("overall_acc", _F), ("base_acc", _F), ("new_acc", _F),
                                ("pos_neg_acc", _F), ("epoch_seconds", _F), ("baseline_epoch_seconds", _F),
                                ("time_ratio", _F), ("dependency_run_id", _S), ("config_json", _S)],
        "derived_models": [("model", _S), ("parent_model", _S), ("parent_sha256", _S), ("role", _S), ("alpha", _F),
                           ("seed", _I), ("pairs_json", _S), ("checkpoint_sha256", _S), ("path", _S),
                           ("config_json", _S)],
        "regularization_pairs": [("model", _S), ("parent_sha256", _S), ("pair_index", _I), ("class_a", _I),
                                 ("class_b", _I), ("name_a", _S), ("name_b", _S), ("coef", _F), ("reason", _S),
                                 ("logit_gauge", _S), ("lambda_rel", _F), ("dependency_run_id", _S)],
        "regularization_results": [("result_id", _S), ("parent_model", _S), ("parent_sha256", _S), ("model", _S),
                                   ("role", _S), ("seed", _I), ("alpha", _F), ("checkpoint_sha256", _S),
                                   ("accuracy", _F), ("ood_aupr", _F), ("lambda_rel", _F), ("logit_gauge", _S),
                                   ("dependency_run_id", _S)],
        "current_analyses": [(c, _S) for c in ("kind", "model", "source_model", "role", "logit_gauge", "dependency_run_id")],
    }.items()
}


class ResultStore:
    """Content-addressed Parquet tables, committed analyses and array artifacts under one store root.

    ``root`` is the local data root (locks, catalog); ``url`` the store root, any fsspec URL (default:
    ``root``). A local root gives `Path` locations, a remote one `UPath` (same operators). ``origin``
    names where the URL came from (a config key, an env var) in errors. An unknown protocol, or one
    whose package is missing, fails here; `verify` checks that the root is reachable."""

    def __init__(self, root: str | os.PathLike, url: str | os.PathLike | None = None, *,
                 origin: str = "the store root"):
        self.root = Path(root).resolve()
        self.origin = origin
        self.url = open_location(self.root if url is None or str(url) == "" else url, origin)
        self.remote = is_remote(self.url)
        self.tables_dir = self.url / "store"
        self.analyses_dir = self.tables_dir / "analyses"
        self.staging_dir = self.tables_dir / ".staging"  # local roots only
        self.locks_dir = self.root / "store" / ".locks"  # always on the local data root (fcntl)
        self.artifacts_dir = self.url / "artifacts"
        self.catalog_path = self.root / "neudep.duckdb"
        self._held: set[str] = set()  # writer locks this object holds (a nested `lock` re-enters)

    def verify(self, *, write: bool = False) -> None:
        """Reach a remote store root (``write``: put and remove a probe) or fail with a StoreError
        naming `origin` and the URL: before any work, not half-way through a run."""
        if self.remote:
            verify_location(self.tables_dir, self.origin, write=write)

    # -- single tables ----------------------------------------------------------------------
    def table_file(self, table: str, key: str) -> Path:
        return self.tables_dir / _check_table(table) / f"{_check_key(key)}.parquet"

    def analysis_dir(self, key: str) -> Path:
        return self.analyses_dir / _check_key(key)

    def _files(self, table: str, key: str) -> list[Path]:
        return [self.analysis_dir(key) / f"{table}.parquet", self.table_file(table, key)]

    def has(self, table: str, key: str) -> bool:
        """Rows of `table` for `key` are committed (alone, or as part of the analysis `key`)."""
        return self._committed_file(table, key)[0] is not None

    def _committed_file(self, table: str, key: str) -> tuple[Path | None, int | None]:
        """The committed file of `table` for `key`, and the size its analysis's marker says (remote)."""
        in_analysis, alone = self._files(table, key)
        if not self.remote and in_analysis.is_file():
            return in_analysis, None
        if self.remote and table in (tables := self._manifest(key) or {}):
            return in_analysis, tables[table]
        return (alone if alone.is_file() else None), None

    def write(self, table: str, key: str, rows: pd.DataFrame | Iterable[dict[str, Any]], *,
              run_id: str, code_version: str) -> Path:
        """Write all rows of one key as one Parquet file (replacing an earlier file of that key)."""
        tbl = _arrow(table, rows, run_id, code_version)
        path = self.table_file(table, key)
        with self.lock(f"{table}/{key}"):
            self.sweep(held=f"{table}/{key}")
            put_whole(path, lambda fh: pq.write_table(tbl, fh))
        return path

    def read(self, table: str, key: str) -> pd.DataFrame:
        path, expected = self._committed_file(table, key)
        if path is None:
            raise StoreError(f"no {table} rows for key {key!r} ({self._files(table, key)[-1]})")
        if expected is not None and (why := parquet_problem(path, expected)):
            raise StoreError(f"store file damaged: {path} ({why})")
        try:
            with path.open("rb") as fh:
                return pq.read_table(fh).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"store file unreadable (zero-length or truncated?): {path}: {exc}") from exc

    # -- analyses: several tables, one commit ----------------------------------------------
    def has_analysis(self, key: str) -> bool:
        """Analysis `key` is committed (local: its folder exists; remote: its marker, with every listed
        file present at its size), and none of its files is damaged."""
        folder = self.analysis_dir(key)
        if not self.remote:
            return folder.is_dir() and not any(parquet_problem(p) for p in folder.glob("*.parquet"))
        tables = self._manifest(key)
        return tables is not None and not any(parquet_problem(folder / f"{t}.parquet", n) for t, n in tables.items())

    def _manifest(self, key: str) -> dict[str, int] | None:
        """Remote roots: the tables (name -> size in bytes) that analysis `key`'s marker lists, or None
        when it has no (readable) marker, i.e. is not committed."""
        try:
            return marker_tables((self.analysis_dir(key) / MARKER).read_bytes())
        except FileNotFoundError:
            return None

    def commit_analysis(self, key: str, tables: Mapping[str, pd.DataFrame | Iterable[dict[str, Any]]], *,
                        run_id: str, code_version: str) -> Path:
        """Commit the rows of several tables as one analysis: all land together or none does.

        Local root: the files are written (and fsynced) in a staging folder that is renamed to
        `store/analyses/<key>/` in one step. Remote root: each file is one put under
        `store/analyses/<key>/`, then the marker `_COMMITTED.json` (tables and sizes) is put last;
        readers see the analysis only once the marker is there. A key already committed is kept
        (keys are content addresses); another writer of the same key waits for this one."""
        frames = {t: _arrow(t, rows, run_id, code_version) for t, rows in tables.items()}
        with self.lock(f"analyses/{key}"):
            return self._commit(key, frames)

    def _commit(self, key: str, frames: Mapping[str, pa.Table]) -> Path:
        final = self.analysis_dir(key)
        if self.has_analysis(key):
            return final
        if final.is_dir() if not self.remote else (final / MARKER).is_file():  # committed once, damaged since
            self.quarantine()
        if not frames:
            raise StoreError(f"analysis {key!r}: no tables to commit")
        if self.remote:
            return commit_with_marker(final, frames)
        self.sweep(held=f"analyses/{key}")
        stage = self.staging_dir / f"{key}.{uuid.uuid4().hex}"
        stage.mkdir(parents=True)
        try:
            for table, tbl in frames.items():
                atomic_write(stage / f"{table}.parquet", lambda fh, t=tbl: pq.write_table(t, fh))
            self.analyses_dir.mkdir(parents=True, exist_ok=True)
            os.rename(stage, final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        _fsync_dir(self.analyses_dir)
        _fsync_dir(self.staging_dir)
        return final

    # -- one writer per key, and what crashed writers left ---------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the writer lock `name` (fcntl, released by the OS if the process dies). With
        wait=False, yield False at once when another process holds it."""
        if name in self._held:
            yield True
            return
        with file_lock(self.locks_dir / f"{name}.lock", wait=wait) as got:
            if got:
                self._held.add(name)
            try:
                yield got
            finally:
                self._held.discard(name)

    def sweep(self, held: str | None = None) -> list[Path]:
        """Remove what killed writers left (staging folders, `*.tmp` files) of keys no one writes now
        (or of `held`, the lock the caller holds). Remote roots leave no such files (a put is whole;
        an analysis without its marker is overwritten by the next commit of its key): nothing to do."""
        if self.remote:
            return []
        leftovers: list[tuple[Path, str]] = []
        if self.staging_dir.is_dir():
            leftovers += [(p, f"analyses/{p.name.rsplit('.', 1)[0]}") for p in self.staging_dir.iterdir()]
        if self.tables_dir.is_dir():
            for tdir in self.tables_dir.iterdir():
                if tdir.name in TABLES and tdir.is_dir():
                    leftovers += [(p, f"{tdir.name}/{p.name[1:].rsplit('.parquet.', 1)[0]}")
                                  for p in tdir.glob(".*.parquet.*.tmp")]
        removed = []
        for path, name in leftovers:
            with contextlib.nullcontext(True) if name == held else self.lock(name, wait=False) as free:
                if free:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    # -- artifacts --------------------------------------------------------------------------
    def artifact(self, kind: str, key: str) -> Path:
        return self.artifacts_dir / kind / f"{key}.npz"

    def save_png(self, run_key: str, name: str, png: bytes) -> Path:
        """A picture belonging to one analysis: artifacts/plots/<run_key>/<name>.png (atomic)."""
        path = self.artifacts_dir / "plots" / run_key / f"{name}.png"
        put_whole(path, lambda fh: fh.write(png))
        return path

    # -- reading: views over committed files ------------------------------------------------
    def table_paths(self, table: str) -> list[Path]:
        """Every committed file of `table` (single keys and analyses), bad ones included."""
        return [p for p, _ in self._committed()[table]]

    def _committed(self) -> dict[str, list[tuple[Path, int | None]]]:
        """Every committed file of every table, with the size its analysis's marker gives it (remote
        roots; else None). Remote: one listing per table folder, one of store/analyses/, and one read
        of all markers (`fs.cat` of a list: concurrent on async back ends such as s3fs)."""
        if not self.remote:
            return {t: [(p, None) for p in sorted((self.tables_dir / t).glob("*.parquet"))
                        + sorted(self.analyses_dir.glob(f"*/{t}.parquet"))] for t in TABLES}
        return remote_committed(self.tables_dir, self.analyses_dir, TABLES)

    def check(self) -> list[tuple[Path, str]]:
        """Committed files that cannot be Parquet (zero-length, truncated; remote: missing, or not of
        the size its analysis's marker says): (path, why)."""
        return [(p, why) for files in self._committed().values() for p, n in files if (why := parquet_problem(p, n))]

    def _unusable(self, bad: Iterable[Path]) -> dict[Path, Path]:
        """What a damaged file takes out of the views: its whole analysis, or itself."""
        return {p: p.parent if p.parent.parent == self.analyses_dir else p for p in bad}

    def quarantine(self) -> list[Path]:
        """Move damaged files (a damaged analysis whole) to store/.quarantine/, with a StoreWarning
        naming each: views over globs then work again, and a rerun recomputes what was lost."""
        moved = []
        problems = dict(self.check())
        for bad, unit in self._unusable(problems).items():
            name = f"analyses/{unit.name}" if unit != bad else f"{unit.parent.name}/{unit.stem}"
            with self.lock(name, wait=False) as free:
                if free and unit.exists():
                    dest = self.tables_dir / ".quarantine" / f"{name.replace('/', '--')}.{uuid.uuid4().hex[:8]}"
                    if self.remote:  # no rename: the marker goes first (the analysis is gone), then the files
                        if unit != bad and (unit / MARKER).is_file():
                            unit.fs.rm_file((unit / MARKER).path)
                        unit.fs.mv(unit.path, dest.path, recursive=True)
                    else:
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.rename(unit, dest)
                    moved.append(dest)
                    warnings.warn(f"damaged store file {bad} ({problems[bad]}): moved {unit} to {dest}",
                                  StoreWarning, stacklevel=2)
        return moved

    def connect(self):
        """An in-memory DuckDB connection with the store's views over its committed, readable files
        (a damaged file, and the rest of its analysis, is left out with a StoreWarning naming it).
        Never touches `neudep.duckdb`."""
        import duckdb

        con = duckdb.connect()
        if self.remote:  # DuckDB reads the store's URLs through its fsspec file system
            con.register_filesystem(self.url.fs)
        committed = self._committed()
        problems = {p: why for files in committed.values() for p, n in files if (why := parquet_problem(p, n))}
        out = self._unusable(problems)
        for bad, unit in out.items():
            warnings.warn(f"store file left out of the views: {bad} ({problems[bad]})"
                          + (f", with the rest of analysis {unit.name}" if unit != bad else "")
                          + "; `neudep check` lists damaged files, a rerun rewrites them", StoreWarning, stacklevel=2)
        skip = set(out.values())
        base = {}
        for table, schema in TABLES.items():
            con.register(f"_neudep_empty_{table}", schema.empty_table())
            files = [p for p, _ in committed[table] if p not in skip and p.parent not in skip]
            listed = ", ".join(map(sql_str, files))
            read = f"SELECT * FROM read_parquet([{listed}], union_by_name = true) UNION ALL BY NAME " if files else ""
            base[table] = f"{read}SELECT * FROM _neudep_empty_{table}"
        con.execute(self._catalog_sql(base))
        return con

    def query(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pd.DataFrame:
        """Run a read-only query (SELECT, EXPLAIN...) on the store's views; parameters are bound by
        DuckDB, never pasted."""
        with self.connect() as con:
            statements = con.extract_statements(sql)
            writes = [s.type.name for s in statements if s.type.name not in ("SELECT", "EXPLAIN")]
            if writes or not statements:
                raise StoreError(f"the store is read-only here: {writes or 'no statement'} refused")
            for st in statements[:-1]:
                con.execute(st)
            return con.execute(statements[-1], params or []).df() if params else con.sql(statements[-1].query).df()

    # -- the catalog file for users ---------------------------------------------------------
    def _catalog_sql(self, base: Mapping[str, str]) -> str:
        return catalog_sql(SQL_DIR / "schema.sql", self.tables_dir, base)

    def _catalog_views(self) -> dict[str, str]:
        return {t: f"SELECT * FROM read_parquet([{sql_str(self.tables_dir / t / '*.parquet')}, "
                   f"{sql_str(self.analyses_dir / '*' / f'{t}.parquet')}], union_by_name = true)" for t in TABLES}

    def ensure_catalog(self) -> Path | None:
        """Create `neudep.duckdb` (views over this root's committed files) or bring it up to date in
        place when its version (schema, SQL, root) differs, keeping users' own tables. A catalog
        another process holds is left alone (it is brought up to date by a later call).

        A remote store root gets no catalog (returns None): its views would have to list committed
        files (a glob would also read uncommitted analyses) through a file system that exists only in
        a Python process. Query it with `neudep sql` / `ResultStore(...).query` (fsspec registered)."""
        import duckdb

        if self.remote:
            return None

        self.quarantine()  # a damaged file would break its views (they read globs)
        for table, schema in TABLES.items():  # every glob of the catalog matches at least one file
            for empty, key in ((self.tables_dir / table / "_empty.parquet", f"{table}/_empty"),
                               (self.analyses_dir / "_empty" / f"{table}.parquet", f"analyses/_empty")):
                if not empty.is_file() or pq.read_schema(empty) != schema:
                    with self.lock(key):
                        atomic_write(empty, lambda fh, s=schema: pq.write_table(s.empty_table(), fh))
        sql = self._catalog_sql(self._catalog_views())
        version = hashlib.sha256(f"{SCHEMA_VERSION}\n{sql}".encode()).hexdigest()
        return write_catalog(self.catalog_path, sql, version, str(self.root))


def _check_table(table: str) -> str:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r}")
    return table


def _arrow(table: str, rows, run_id: str, code_version: str) -> pa.Table:
    """Rows of `table` with their provenance, checked against TABLES[table] (nothing written)."""
    schema = TABLES[_check_table(table)]
    df = (pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows).assign(
        dagster_run_id=run_id, code_version=code_version, written_at=pd.Timestamp.now(tz="UTC"))
    extra = [c for c in df.columns if c not in schema.names]
    if extra:
        raise StoreError(f"table {table}: unexpected columns {extra}")
    for name in schema.names:
        if name not in df.columns:
            df[name] = None
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
