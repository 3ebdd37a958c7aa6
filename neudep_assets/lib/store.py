"""The result store: Parquet files are the source of truth, `neudep.duckdb` a catalog of views.

Layout under the store root (the data root, or any fsspec URL: config `store:` / NEUDEP_STORE)::

    store/<table>/<key>.parquet        one file per content-addressed key, written whole, and its
    store/<table>/<key>.manifest.json  manifest (bytes, rows, sha256), see store_manifest
    store/analyses/<key>/              one committed analysis: its <table>.parquet files and manifest
                                       _COMMITTED.json (local: written under store/.staging/ and
                                       renamed in one step; remote: one put per file, manifest last)
    artifacts/<kind>/<key>.npz         arrays (logits, moments), same whole write; artifacts/plots/

On the local data root whatever the store root: store/.locks/ (fcntl, one writer per key: per
machine on a remote root) and neudep.duckdb (views for users; local store roots only). Views read
exactly the files the manifests list; queries run in a sandbox without file access (store_sandbox).
Runs and `query` never open `neudep.duckdb`: a user holding it never blocks a run. docs/store.md."""

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

from neudep_assets.lib.files import (StoreError, _fsync_dir, atomic_write, is_remote, load_arrays, put_whole, save_arrays,
                                    write_folder)
from neudep_assets.lib.store_manifest import (MARKER, SIDECAR, Listed, analysis_manifest, describe, file_problem,
                                              local_committed, parquet_bytes, read_analysis, read_sidecar,
                                              remote_committed, remote_strays, sidecar_manifest, strays)
from neudep_assets.lib.store_objects import (StoreWarning, catalog_sql, check_key as _check_key, commit_with_marker,
                                             file_lock, move_remote, open_location, sql_str, verify_location,
                                             write_catalog)
from neudep_assets.lib.store_sandbox import catalog_base, run_query, sandbox_connection
from neudep_assets.lib.store_tables import TABLES

__all__ = ["MARKER", "TABLES", "ResultStore", "StoreError", "StoreWarning", "atomic_write", "load_arrays", "put_whole",
           "save_arrays"]

SCHEMA_VERSION = 7  # part of the catalog version (with sql/schema.sql, the root and the files); 3: logit gauge,
#   logit_stats; 4: §3.2 / §3.3 tables; 5: checkpoints_current, dependencies_current; 6: path tables; 7: manifests
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

class ResultStore:
    """Content-addressed Parquet tables, committed analyses and array artifacts under one store root.

    ``root`` is the local data root (locks, catalog); ``url`` the store root, any fsspec URL (default:
    ``root``). A local root gives `Path` locations, a remote one `UPath` (same operators). ``origin``
    names where the URL came from (a config key, an env var) in errors. An unknown protocol, or one
    whose package is missing, fails here, as does a local store whose own folders are symbolic
    links; `verify` checks that a remote root is reachable."""

    def __init__(self, root: str | os.PathLike, url: str | os.PathLike | None = None, *,
                 origin: str = "the store root"):
        self.root = Path(root).resolve()
        self.origin = origin
        self.url = open_location(self.root if url is None or str(url) == "" else url, origin)
        self.remote = is_remote(self.url)
        self.tables_dir = self.url / "store"
        self.analyses_dir = self.tables_dir / "analyses"
        self.staging_dir = self.tables_dir / ".staging"  # local roots only
        self.quarantine_dir = self.tables_dir / ".quarantine"
        self.locks_dir = self.root / "store" / ".locks"  # always on the local data root (fcntl)
        self.artifacts_dir = self.url / "artifacts"
        self.catalog_path = self.root / "neudep.duckdb"
        self._held: set[str] = set()  # writer locks this object holds (a nested `lock` re-enters)
        self._guard()

    def _guard(self) -> None:
        """Refuse a local store whose own folders are symbolic links (its sweeps and quarantine move
        and delete there): a StoreError naming the folder, before any work."""
        if self.remote:
            return
        own = [self.tables_dir, self.analyses_dir, self.staging_dir, self.quarantine_dir, self.artifacts_dir,
               self.locks_dir, *(self.tables_dir / t for t in TABLES)]
        for folder in own:  # the roots are resolved: a link anywhere below them changes the real path
            if folder.is_symlink() or (folder.exists() and Path(os.path.realpath(folder)) != folder):
                raise StoreError(f"store folder {folder} is a symbolic link (to {os.path.realpath(folder)}): refused; "
                                 f"the store never moves or deletes through links (make it a real folder, or point "
                                 f"the store root itself elsewhere)")

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

    def has(self, table: str, key: str) -> bool:
        """Rows of `table` for `key` are committed (alone, or in the analysis `key`) and pass the
        cheap checks against their manifest (size, Parquet footer, rows, schema)."""
        listed = self._listed(table, key)
        return listed is not None and file_problem(listed, TABLES[table]) is None

    def _analysis_files(self, key: str) -> list[Listed] | None:
        """What analysis `key`'s manifest lists; None when it is not committed (no manifest of its own)."""
        folder = self.analysis_dir(key)
        if not self.remote and folder.is_symlink():
            return None
        try:
            return read_analysis((folder / MARKER).read_bytes(), folder, TABLES)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def _listed(self, table: str, key: str) -> Listed | None:
        for f in self._analysis_files(key) or []:
            if f.table == table:
                return f
        side = self.table_file(table, key).with_name(f"{key}{SIDECAR}")
        try:
            return read_sidecar(side.read_bytes(), side, TABLES) if self.remote or not side.is_symlink() else None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, table: str, key: str, rows: pd.DataFrame | Iterable[dict[str, Any]], *,
              run_id: str, code_version: str) -> Path:
        """Write all rows of one key as one Parquet file (replacing an earlier file of that key) and
        its manifest: while a committed file is replaced its manifest accepts old and new content."""
        tbl = _arrow(table, rows, run_id, code_version)
        data = parquet_bytes(tbl)
        new = describe(data, tbl.num_rows)
        path = self.table_file(table, key)
        side = path.with_name(f"{key}{SIDECAR}")
        with self.lock(f"{table}/{key}"):
            self.sweep(held=f"{table}/{key}")
            old = self._listed(table, key)
            if old is not None and old.analysis is None and file_problem(old, TABLES[table]) is None:
                versions = [dict(zip(("bytes", "rows", "sha256"), v)) for v in old.versions]
                put_whole(side, lambda fh: fh.write(sidecar_manifest(table, key, versions + [new])))
            put_whole(path, lambda fh: fh.write(data))
            put_whole(side, lambda fh: fh.write(sidecar_manifest(table, key, [new])))
        return path

    def read(self, table: str, key: str) -> pd.DataFrame:
        listed = self._listed(table, key)
        if listed is None:
            raise StoreError(f"no {table} rows for key {key!r} ({self.table_file(table, key)})")
        if why := file_problem(listed, TABLES[table]):
            raise StoreError(f"store file damaged: {listed.path} ({why})")
        try:
            with listed.path.open("rb") as fh:
                return pq.read_table(fh, page_checksum_verification=True).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"store file unreadable (a page fails its checksum?): {listed.path}: {exc}") from exc

    # -- analyses: several tables, one commit ----------------------------------------------
    def has_analysis(self, key: str) -> bool:
        """Analysis `key` is committed (its manifest there, naming it) and every file it lists passes
        the cheap checks (size, Parquet footer, rows, schema)."""
        files = self._analysis_files(key)
        return bool(files) and not any(file_problem(f, TABLES[f.table]) for f in files)

    def commit_analysis(self, key: str, tables: Mapping[str, pd.DataFrame | Iterable[dict[str, Any]]], *,
                        run_id: str, code_version: str) -> Path:
        """Commit the rows of several tables as one analysis: all land together or none does.

        Local root: the files and their manifest `_COMMITTED.json` are written (and fsynced, in
        parallel) in a staging folder that is renamed to `store/analyses/<key>/` in one step. Remote root: each file
        is one put under `store/analyses/<key>/`, then the manifest is put last; readers see the
        analysis only once it is there. A key already committed is kept (keys are content
        addresses); another writer of the same key waits for this one."""
        frames = {t: _arrow(t, rows, run_id, code_version) for t, rows in tables.items()}
        with self.lock(f"analyses/{key}"):
            final = self._commit(key, frames)
        self._refresh_catalog()
        return final

    def _commit(self, key: str, frames: Mapping[str, pa.Table]) -> Path:
        final = self.analysis_dir(key)
        if self.has_analysis(key):
            return final
        if not frames:
            raise StoreError(f"analysis {key!r}: no tables to commit")
        if self.remote:
            return commit_with_marker(final, key, frames)
        if final.exists() or final.is_symlink():  # committed once and damaged since, or not ours: set aside
            self._move_aside(final, f"analyses/{key}", "in the way of a new commit")
        self.sweep(held=f"analyses/{key}")
        stage = self.staging_dir / f"{key}.{uuid.uuid4().hex}"
        stage.mkdir(parents=True)
        try:
            blobs = {f"{t}.parquet": parquet_bytes(tbl) for t, tbl in frames.items()}
            blobs[MARKER] = analysis_manifest(key, {t: describe(blobs[f"{t}.parquet"], tbl.num_rows)
                                                    for t, tbl in frames.items()})
            write_folder(stage, blobs)
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
        """Remove what killed writers left (staging folders, `.*.tmp` files) of keys no one writes now
        (or of `held`, the lock the caller holds), never following a link (a link is removed, not
        its target). Remote roots leave no such files (a put is whole; objects without a manifest
        are overwritten by the next commit of their key): nothing to do."""
        if self.remote:
            return []
        self._guard()
        leftovers: list[tuple[Path, str]] = []
        if self.staging_dir.is_dir():
            leftovers += [(p, f"analyses/{p.name.rsplit('.', 1)[0]}") for p in self.staging_dir.iterdir()]
        for table in TABLES:
            if (self.tables_dir / table).is_dir():
                leftovers += [(p, f"{table}/{_tmp_key(p.name)}") for p in (self.tables_dir / table).glob(".*.tmp")]
        removed = []
        for path, name in leftovers:
            with contextlib.nullcontext(True) if name == held else self.lock(name, wait=False) as free:
                if free:
                    _remove(path)
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

    # -- reading: what the manifests list -------------------------------------------------
    def _committed(self) -> list[Listed]:
        """Every file the store's manifests list. Remote: two globs and two batched reads."""
        return remote_committed(self.tables_dir, TABLES) if self.remote else local_committed(self.tables_dir, TABLES)

    def table_paths(self, table: str) -> list[Path]:
        """Every committed file of `table` (single keys and analyses), bad ones included."""
        return [f.path for f in self._committed() if f.table == _check_table(table)]

    def check(self, *, full: bool = True) -> list[tuple[Path, str]]:
        """Committed files that are not what their manifest lists: (path, why naming the analysis).
        `full` (default): every byte's sha256 too; else the cheap checks (size, footer, rows, schema)."""
        return [(f.path, f"analysis {f.analysis}: {why}" if f.analysis else f"table {f.table}, key {f.key}: {why}")
                for f in self._committed() if (why := file_problem(f, TABLES[f.table], full=full))]

    def strays(self) -> list[tuple[Path, str]]:
        """What lies under store/ that no manifest lists (copied folders, foreign files, links):
        never served."""
        listed = self._committed()
        return remote_strays(self.tables_dir, listed) if self.remote else strays(self.tables_dir, listed, TABLES)

    def _served(self, *, warn: bool = True) -> dict[str, list[Path]]:
        """The files views read, per table: those the manifests list, less any that fail the cheap
        checks (with the rest of its analysis; a StoreWarning names each)."""
        listed = self._committed()
        bad = {f.path: why for f in listed if (why := file_problem(f, TABLES[f.table]))}
        out_analyses = {f.analysis for f in listed if f.path in bad and f.analysis}
        for f in listed:
            if f.path in bad and warn:
                warnings.warn(f"store file left out of the views: {f.path} ({bad[f.path]})"
                              + (f", with the rest of analysis {f.analysis}" if f.analysis else "")
                              + "; `neudep check` lists damaged files, a rerun rewrites them", StoreWarning, stacklevel=3)
        files: dict[str, list[Path]] = {t: [] for t in TABLES}
        for f in listed:
            if f.path not in bad and f.analysis not in out_analyses:
                files[f.table].append(f.path)
        return files

    def quarantine(self) -> list[Path]:
        """Move each analysis with a damaged file (whole), and each damaged single-key file (with its
        manifest), to store/.quarantine/, with a StoreWarning naming the file: views drop them, and a
        rerun recomputes what was lost. Never moves through a symbolic link."""
        moved = []
        for path, why in self.check():
            in_analysis = path.parent.parent == self.analyses_dir
            unit = path.parent if in_analysis else path
            name = f"analyses/{unit.name}" if in_analysis else f"{path.parent.name}/{path.stem}"
            with self.lock(name, wait=False) as free:
                if free and (unit.exists() or (not self.remote and unit.is_symlink())):
                    dest = self._move_aside(unit, name, why)
                    moved.append(dest)
                    warnings.warn(f"damaged store file {path} ({why}): moved {unit} to {dest}", StoreWarning,
                                  stacklevel=2)
        return moved

    def _move_aside(self, unit: Path, name: str, why: str) -> Path:
        """Move an analysis folder or a single-key file (its manifest first) to store/.quarantine/."""
        dest = self.quarantine_dir / f"{name.replace('/', '--')}.{uuid.uuid4().hex[:8]}"
        if self.remote:
            in_analysis = unit.parent == self.analyses_dir
            return move_remote(unit, dest, unit / MARKER if in_analysis else unit.with_name(f"{unit.stem}{SIDECAR}"))
        self._guard()
        if unit.is_symlink():  # never followed: the link goes, not what it points to
            unit.unlink()
            return unit
        dest.mkdir(parents=True)
        if unit.parent != self.analyses_dir:
            side = unit.with_name(f"{unit.stem}{SIDECAR}")
            if side.exists() and not side.is_symlink():
                os.rename(side, dest / side.name)
        os.rename(unit, dest / unit.name)
        return dest

    def connect(self):
        """An in-memory DuckDB connection in the read-only sandbox (store_sandbox: no file access at
        all), with the store's views over exactly the committed files that pass the cheap checks (a
        damaged file, and the rest of its analysis, is left out with a StoreWarning naming it).
        Never touches `neudep.duckdb`."""
        return sandbox_connection(self._served(), TABLES, self._catalog_sql)

    def query(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pd.DataFrame:
        """Run one read-only statement (SELECT, EXPLAIN) in the sandbox; parameters are bound by
        DuckDB, never pasted, and keep their Python types."""
        with self.connect() as con:
            return run_query(con, sql, params)

    # -- the catalog file for users ---------------------------------------------------------
    def _catalog_sql(self, base: Mapping[str, str]) -> str:
        return catalog_sql(SQL_DIR / "schema.sql", self.tables_dir, base)

    def ensure_catalog(self) -> Path | None:
        """Create `neudep.duckdb` (views over exactly the files the manifests list and the cheap checks
        pass) or bring it up to date in place when its version (schema, SQL, root, file list) differs,
        keeping users' own tables. A catalog another process holds is left alone (brought up to date
        by a later call: every commit tries).

        A remote store root gets no catalog (returns None): its files are read through a file system
        that exists only in a Python process. Query it with `neudep sql` / `ResultStore(...).query`."""
        if self.remote:
            return None
        sql = self._catalog_sql(catalog_base(self._served(), TABLES, sql_str))
        version = hashlib.sha256(f"{SCHEMA_VERSION}\n{sql}".encode()).hexdigest()
        return write_catalog(self.catalog_path, sql, version, str(self.root))

    def _refresh_catalog(self) -> None:
        """After an analysis's commit: the user catalog, where there is one, lists the new files (and
        single-key files written since); never fails a run. `neudep sql`/`summary` and the
        comparisons asset also bring it up to date."""
        import duckdb

        if not self.remote and self.catalog_path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StoreWarning)
                with contextlib.suppress(OSError, duckdb.Error):
                    self.ensure_catalog()


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


def _tmp_key(name: str) -> str:
    """The key of a temporary file `.<key>.parquet.<x>.tmp` or `.<key>.manifest.json.<x>.tmp`."""
    for suffix in (".parquet.", f"{SIDECAR}."):
        if suffix in name:
            return name[1:].rsplit(suffix, 1)[0]
    return name


def _remove(path: Path) -> None:
    """Remove a file or folder; a link is removed itself, never followed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
