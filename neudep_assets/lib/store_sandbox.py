"""The read-only SQL sandbox over the store, and the base views of the user catalog.

Queries (`neudep sql`, `ResultStore.query`/`connect`, the cookbook) run in an in-memory DuckDB that
has no file access at all: ``enable_external_access`` off with no allowed path (so COPY, ATTACH,
EXPORT, read_csv, read_text, glob, http URLs and extension installs all fail), extension auto-install
and auto-load off, no spill directory, and ``lock_configuration`` on so no SET gives any of it back.
The store's committed files reach it as Arrow datasets registered by name: pyarrow reads exactly the
files the manifests list (local disk, or the root's fsspec file system) and verifies each page's
CRC, so no path a query names is ever opened by DuckDB."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from neudep_assets.lib.files import StoreError, is_remote

SANDBOX = {"enable_external_access": False,
           "autoinstall_known_extensions": False, "autoload_known_extensions": False, "temp_directory": "",
           "lock_configuration": True}
READ_ONLY = ("SELECT", "EXPLAIN")

_DUCK = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
         pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}


def sandbox_connection(files: Mapping[str, list[Path]], schemas: Mapping[str, pa.Schema], catalog_sql):
    """A locked-down DuckDB connection with one registered Arrow dataset `_neudep_files_<table>` per
    table (its `files`, read with the table's schema: a column an older file lacks is NULL) and the
    views `catalog_sql(base)` builds over them."""
    import duckdb

    con = duckdb.connect(config=SANDBOX)
    fmt = pds.ParquetFileFormat(default_fragment_scan_options=pds.ParquetFragmentScanOptions(
        page_checksum_verification=True))
    base = {}
    for table, schema in schemas.items():
        paths = files.get(table, [])
        fs = (pafs.PyFileSystem(pafs.FSSpecHandler(paths[0].fs)) if paths and is_remote(paths[0])
              else pafs.LocalFileSystem())
        dataset = pds.FileSystemDataset.from_paths([p.path if is_remote(p) else str(p) for p in paths],
                                                   schema=schema, format=fmt, filesystem=fs)
        con.register(f"_neudep_files_{table}", dataset)
        base[table] = f"SELECT * FROM _neudep_files_{table}"
    con.execute(catalog_sql(base))
    return con


def one_read_only_statement(con, sql: str):
    """The one statement of `sql`, refused with a StoreError when there are several, none, or one
    that is not a query (the sandbox refuses file access whatever the statement)."""
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        raise StoreError(f"one SQL statement per call, got {len(statements)}"
                         + (": run them one at a time" if statements else ""))
    kind = statements[0].type.name
    if kind == "EXPLAIN":  # what it explains (EXPLAIN ANALYZE runs it) must be a query too
        inner = con.extract_statements(re.sub(r"(?is)^(\s|--[^\n]*\n|/\*.*?\*/)*explain(\s+analy[sz]e)?", "",
                                              statements[0].query, count=1))
        kind = inner[0].type.name if len(inner) == 1 else "EXPLAIN"
    if kind not in READ_ONLY:
        raise StoreError(f"the store is read-only here: {kind} refused (SELECT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE only)")
    return statements[0]


def run_query(con, sql: str, params: dict[str, Any] | list[Any] | None):
    import duckdb

    statement = one_read_only_statement(con, sql)
    try:
        return con.execute(statement.query, params).df() if params else con.sql(statement.query).df()
    except duckdb.Error as exc:
        if "checksum" not in str(exc).lower():
            raise
        raise StoreError(f"{exc}: a committed file changed after its commit (never served); `neudep check` "
                         f"names it, `neudep check --quarantine` sets its analysis aside") from exc


def catalog_base(files: Mapping[str, list[Path]], schemas: Mapping[str, pa.Schema], sql_str) -> dict[str, str]:
    """Base views for the catalog file: each reads exactly the listed files (never a glob), united
    by name with a typed empty row set so every column exists even with no file."""
    out = {}
    for table, schema in schemas.items():
        empty = ", ".join(f'CAST(NULL AS {_DUCK[f.type]}) AS "{f.name}"' for f in schema)
        typed = f"(SELECT {empty} WHERE false)"
        paths = files.get(table, [])
        out[table] = (f"SELECT * FROM read_parquet([{', '.join(map(sql_str, paths))}], union_by_name = true) "
                      f"UNION ALL BY NAME {typed}" if paths else typed)
    return out
