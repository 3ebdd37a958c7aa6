"""The result store's file-level parts: its root as any fsspec URL, commits without rename on object
stores (one put per file, then the manifest), locks, and the catalog file.

An object store has no atomic rename, but a single put is whole or absent. So an analysis on a
remote root is committed by its manifest ``store/analyses/<key>/_COMMITTED.json`` (store_manifest),
put after its files: without it no reader lists them; with it, a listed file that is missing or
not what it lists is damaged (left out of the views with a warning, like a truncated local file).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import pyarrow as pa

from neudep_assets.lib.files import StoreError, as_path, is_remote, put_whole
from neudep_assets.lib.store_manifest import MARKER, analysis_manifest, describe, parquet_bytes


class StoreWarning(UserWarning):
    """A store file is not what its manifest lists (damaged, truncated) and was left out of the views."""


def open_location(url, origin: str) -> Path:
    """The store root: a resolved `Path` for a local path or ``file://`` URL, else a `UPath` whose
    file system is built now, so an unknown protocol, a missing package (s3fs…) or a refused
    connection fails here with a StoreError naming `origin` and the URL."""
    try:
        loc = as_path(url)
        if is_remote(loc):
            loc.fs  # noqa: B018  (builds the file system)
            return loc
    except Exception as exc:  # ValueError (unknown protocol), ImportError (package), OSError (refused)…
        raise StoreError(f"{origin}: cannot use store URL {str(url)!r}: {type(exc).__name__}: {exc}") from exc
    return Path(loc).resolve()


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an fcntl lock on the local file `path` (released by the OS if the process dies); yield
    whether it was got (with wait=False, False at once when another process holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def check_key(key: str) -> str:
    if not key or any(c in key for c in "/\\") or key.startswith("."):
        raise StoreError(f"bad store key {key!r}")
    return key


def verify_location(folder: Path, origin: str, *, write: bool = False) -> None:
    """Reach a remote `folder` (``write``: put and remove a probe object) or fail naming `origin`."""
    probe = folder / f".probe-{uuid.uuid4().hex}"
    try:
        if write:
            probe.fs.pipe_file(probe.path, b"")
            probe.fs.rm_file(probe.path)
        else:
            folder.fs.exists(folder.path)
    except Exception as exc:  # fsspec back ends raise their own errors (botocore, aiohttp, OSError…)
        raise StoreError(f"{origin}: store URL {str(folder.parent)!r} is not reachable"
                         f"{' for writing' if write else ''}: {type(exc).__name__}: {exc}") from exc


def commit_with_marker(final: Path, key: str, frames: Mapping[str, pa.Table]) -> Path:
    """One put per table under `final`, then the manifest (no rename on an object store). A writer
    that dies before the manifest leaves objects no reader lists; the next commit of the key puts
    them again."""
    marker = final / MARKER
    if marker.is_file():
        marker.fs.rm_file(marker.path)
    files = {}
    for table, tbl in frames.items():
        data = parquet_bytes(tbl)
        put_whole(final / f"{table}.parquet", lambda fh, d=data: fh.write(d))
        files[table] = describe(data, tbl.num_rows)
    put_whole(marker, lambda fh: fh.write(analysis_manifest(key, files)))
    return final


def move_remote(unit: Path, dest: Path, manifest: Path) -> Path:
    """Move an analysis folder or a single-key object aside on an object store (no rename): its
    `manifest` goes first, so it is uncommitted at once, then the objects."""
    if manifest.is_file():
        manifest.fs.rm_file(manifest.path)
    unit.fs.mv(unit.path, (dest / unit.name).path, recursive=True)
    return dest


@functools.lru_cache(maxsize=16)
def _statements(schema: str) -> tuple[str, ...]:
    """The statements of a schema.sql text, parsed once per text (every query's sandbox builds its
    views from them: parsing cost a DuckDB connection per query)."""
    import duckdb

    with duckdb.connect() as con:
        return tuple(s.query.rstrip().rstrip(";") for s in con.extract_statements(schema))


def catalog_sql(schema_sql: Path, tables_dir: Path, base: Mapping[str, str]) -> str:
    """Base views (one per table, from `base`) then `schema_sql`'s derived views; a base view that
    schema.sql defines is skipped (base views read committed files only, and come from TABLES)."""
    views = "".join(f"CREATE OR REPLACE VIEW {t} AS {q};\n" for t, q in base.items())
    statements = _statements(schema_sql.read_text().replace("{{STORE}}", sql_str(tables_dir)[1:-1]))
    view = re.compile(r"(?is)(?:\s|--[^\n]*\n|/\*.*?\*/)*create\s+(?:or\s+replace\s+)?view\s+(\w+)")
    return views + "".join(f"{s};\n" for s in statements if not ((m := view.match(s)) and m.group(1) in base))


def write_catalog(path: Path, sql: str, version: str, root: str) -> Path:
    """Create the catalog file `path` (built aside, linked into place) or update it in place when its
    `version` differs, keeping users' own tables; a file another process holds is left alone."""
    import duckdb

    setup = sql + "\nCREATE OR REPLACE TABLE neudep_schema AS SELECT ? AS version, ? AS root;"
    if not path.exists():
        tmp = path.with_name(f".neudep.{uuid.uuid4().hex}.duckdb")
        try:
            with duckdb.connect(str(tmp)) as con:
                con.execute(setup, [version, root])
            with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        return path
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            current = con.execute("SELECT version FROM neudep_schema").fetchone()[0]
    except duckdb.IOException:  # held read-write by someone: never rebuilt under them
        return path
    except duckdb.Error:
        current = None
    if current != version:
        try:
            with duckdb.connect(str(path)) as con:
                con.execute(setup, [version, root])
        except duckdb.IOException as exc:
            warnings.warn(f"{path} is in use, its views were not updated: {exc}", StoreWarning)
    return path


def sql_str(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"
