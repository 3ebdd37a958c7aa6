"""Manifests: what the store committed, file by file, and the checks of a file against its manifest.

A committed analysis holds `_COMMITTED.json` (its key, and per table file: bytes, rows, sha256); on a
local root it is written into the staging folder before the rename, on a remote one it is put last.
A single-key file ``store/<table>/<key>.parquet`` has the sidecar ``<key>.manifest.json`` (table,
key, file and the accepted versions). A rewrite lists old and new version while the file is
replaced, then the new one alone: a reader always finds the file matching its manifest, and a
writer that dies between the steps leaves a manifest that accepts either genuine version.

Views, `has` and `has_analysis` read only what a manifest lists and check it cheaply (size, the
Parquet footer, its rows and schema); `neudep check` also hashes every byte."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

MARKER = "_COMMITTED.json"  # an analysis is committed once its manifest is there (local: inside the rename)
SIDECAR = ".manifest.json"  # store/<table>/<key>.manifest.json
FORMAT = 1


@dataclass(frozen=True)
class Listed:
    """A file some manifest lists: where, which table and key, its analysis (None: a single-key
    file), and the versions (bytes, rows, sha256) its manifest accepts."""
    path: Path
    table: str
    key: str
    analysis: str | None
    versions: tuple[tuple[int, int, str], ...]


def parquet_bytes(tbl: pa.Table) -> bytes:
    """A table as Parquet bytes, with a CRC per page (readers through `connect` verify them)."""
    buf = pa.BufferOutputStream()
    pq.write_table(tbl, buf, write_page_checksum=True)
    return buf.getvalue().to_pybytes()


def describe(data: bytes, rows: int) -> dict:
    return {"bytes": len(data), "rows": int(rows), "sha256": hashlib.sha256(data).hexdigest()}


def analysis_manifest(key: str, files: Mapping[str, dict]) -> bytes:
    """`files`: table -> describe(...)."""
    return json.dumps({"neudep_manifest": FORMAT, "key": key,
                       "files": {f"{t}.parquet": {"table": t, **d} for t, d in files.items()}}, indent=1).encode()


def sidecar_manifest(table: str, key: str, versions: Iterable[dict]) -> bytes:
    return json.dumps({"neudep_manifest": FORMAT, "table": table, "key": key, "file": f"{key}.parquet",
                       "versions": list(versions)}, indent=1).encode()


def _version(d) -> tuple[int, int, str]:
    if not (isinstance(d, dict) and isinstance(d.get("bytes"), int) and isinstance(d.get("rows"), int)
            and isinstance(d.get("sha256"), str) and len(d["sha256"]) == 64):
        raise ValueError("bad version entry")
    return d["bytes"], d["rows"], d["sha256"]


def read_analysis(raw: bytes, folder: Path, tables) -> list[Listed] | None:
    """The files analysis manifest `raw` of `folder` lists; None when it is not a manifest of this
    folder's key (a copied folder keeps the key it was committed under) or names an unknown table."""
    try:
        doc = json.loads(raw)
        if doc.get("neudep_manifest") != FORMAT or doc.get("key") != folder.name:
            return None
        out = [Listed(folder / name, d["table"], folder.name, folder.name, (_version(d),))
               for name, d in doc["files"].items()]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    ok = out and all(f.table in tables and f.path.name == f"{f.table}.parquet" for f in out)
    return out if ok else None


def read_sidecar(raw: bytes, path: Path, tables) -> Listed | None:
    """The file sidecar `path` (``<key>.manifest.json``) lists; None when foreign, of another key or
    table (a copied sidecar), or damaged."""
    try:
        doc = json.loads(raw)
        key, table = doc["key"], doc["table"]
        good = (doc.get("neudep_manifest") == FORMAT and table in tables and table == path.parent.name
                and path.name == f"{key}{SIDECAR}" and doc.get("file") == f"{key}.parquet")
        versions = tuple(_version(v) for v in doc["versions"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return Listed(path.with_name(f"{key}.parquet"), table, key, None, versions) if good and versions else None


def local_committed(tables_dir: Path, tables) -> list[Listed]:
    """Every file the manifests of a local store list (symbolic links never followed)."""
    out: list[Listed] = []
    analyses = tables_dir / "analyses"
    if analyses.is_dir() and not analyses.is_symlink():
        for entry in sorted(os.scandir(analyses), key=lambda e: e.name):
            marker = Path(entry.path) / MARKER
            if entry.is_dir(follow_symlinks=False) and not marker.is_symlink() and marker.is_file():
                out += read_analysis(marker.read_bytes(), Path(entry.path), tables) or []
    for table in tables:
        folder = tables_dir / table
        if folder.is_dir() and not folder.is_symlink():
            for side in sorted(folder.glob(f"*{SIDECAR}")):
                if not side.is_symlink() and (listed := read_sidecar(side.read_bytes(), side, tables)):
                    out.append(listed)
    return out


def remote_committed(tables_dir: Path, tables) -> list[Listed]:
    """The same on an fsspec root: two globs and two batched reads (`fs.cat` of a list: concurrent
    on async back ends such as s3fs)."""
    fs, base = tables_dir.fs, tables_dir.path.rstrip("/")
    out: list[Listed] = []
    markers = sorted(fs.glob(f"{base}/analyses/*/{MARKER}"))
    for path, raw in sorted((fs.cat(markers, on_error="omit") if markers else {}).items()):
        rel = path.rstrip("/")[len(base) + 1:].split("/")
        out += read_analysis(raw, tables_dir / "analyses" / rel[1], tables) or []
    sides = sorted(fs.glob(f"{base}/*/*{SIDECAR}"))
    for path, raw in sorted((fs.cat(sides, on_error="omit") if sides else {}).items()):
        rel = path.rstrip("/")[len(base) + 1:].split("/")
        if rel[0] in tables and (listed := read_sidecar(raw, tables_dir / rel[0] / rel[1], tables)):
            out.append(listed)
    return out


def file_problem(f: Listed, schema: pa.Schema, *, full: bool = False) -> str | None:
    """Why `f` is not what its manifest lists, or None. Cheap: no symbolic link, a size the manifest
    accepts, a readable Parquet footer with that version's row count and the table's schema. `full`:
    the sha256 of every byte too."""
    try:
        if f.path.is_symlink():
            return "a symbolic link (never served)"
        size = f.path.stat().st_size
        match = [v for v in f.versions if v[0] == size]
        if not match:
            return f"{size} bytes where its manifest says {' or '.join(str(v[0]) for v in f.versions)}"
        with f.path.open("rb") as fh:
            meta = pq.read_metadata(fh)
            if full:
                fh.seek(0)
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowException) as exc:
        return f"Parquet footer unreadable: {exc}"
    rows = [v for v in match if v[1] == meta.num_rows]
    if not rows:
        return f"{meta.num_rows} rows where its manifest says {match[0][1]}"
    got = meta.schema.to_arrow_schema()
    if not got.remove_metadata().equals(schema):
        return f"schema differs from table {f.table}'s: {_schema_diff(got, schema)}"
    if full and digest not in {v[2] for v in rows}:
        return "sha256 differs from its manifest (content changed after its commit)"
    return None


def _schema_diff(got: pa.Schema, want: pa.Schema) -> str:
    missing = [n for n in want.names if n not in got.names]
    extra = [n for n in got.names if n not in want.names]
    typed = [f"{n}: {got.field(n).type} not {want.field(n).type}" for n in want.names
             if n in got.names and got.field(n).type != want.field(n).type]
    return "; ".join(filter(None, [missing and f"missing {missing}", extra and f"extra {extra}", *typed])) or "order"


def strays(tables_dir: Path, listed: Iterable[Listed], tables) -> list[tuple[Path, str]]:
    """What lies under store/ that no manifest lists (never served): copied or foreign analysis
    folders, unlisted files, symbolic links. Local roots only; leftovers of killed writers (staging
    folders, ``.*.tmp``) are the sweep's, not listed."""
    known = {f.path for f in listed} | {f.path.with_name(f"{f.key}{SIDECAR}") for f in listed if f.analysis is None}
    committed = {f.analysis for f in listed if f.analysis}
    out: list[tuple[Path, str]] = []
    if not tables_dir.is_dir():
        return out
    for entry in sorted(tables_dir.iterdir()):
        if entry.name in (".locks", ".quarantine", ".staging"):
            continue
        if entry.is_symlink():
            out.append((entry, "a symbolic link: never served"))
        elif entry.name == "analyses" and entry.is_dir():
            for folder in sorted(entry.iterdir()):
                if folder.is_symlink() or not folder.is_dir():
                    out.append((folder, "not a committed analysis folder (a link or a file): never served"))
                elif folder.name == "_empty":
                    out.append((folder, "a placeholder of an earlier neudep's catalog: safe to delete"))
                elif folder.name not in committed:
                    out.append((folder, "not a committed analysis (no manifest of its own: a copy, or a "
                                        "commit of an earlier neudep): never served"))
                else:
                    out += [(p, "not in its analysis's manifest: never served") for p in sorted(folder.iterdir())
                            if p not in known and p.name != MARKER]
        elif entry.name in tables and entry.is_dir():
            for p in sorted(entry.iterdir()):
                if p.name == "_empty.parquet":
                    out.append((p, "a placeholder of an earlier neudep's catalog: safe to delete"))
                elif p not in known and not (p.name.startswith(".") and p.name.endswith(".tmp")):
                    out.append((p, "not listed by any manifest: never served"))
        else:
            out.append((entry, "not a folder of the store: never served"))
    return out


def remote_strays(tables_dir: Path, listed: Iterable[Listed]) -> list[tuple[Path, str]]:
    """`strays` on an fsspec root, from one recursive listing: analysis folders without a manifest of
    their own (copies, or writers that died before their manifest: the next commit of the key puts
    them again) once each, and files no manifest lists."""
    fs, base = tables_dir.fs, tables_dir.path.rstrip("/")
    known = {f.path.path for f in listed} | {f.path.with_name(f"{f.key}{SIDECAR}").path for f in listed
                                             if f.analysis is None}
    committed = {f.analysis for f in listed if f.analysis}
    out: dict[str, tuple[Path, str]] = {}
    for path in sorted(fs.find(base)):
        rel = path[len(base) + 1:].split("/")
        if rel[0] == ".quarantine" or rel[-1].startswith(".probe-") or path in known:
            continue
        if rel[0] == "analyses" and len(rel) > 2 and rel[1] not in committed:
            out.setdefault(rel[1], (tables_dir / "analyses" / rel[1], "not a committed analysis (no manifest of "
                                    "its own: a copy, or a writer that died first): never served"))
        elif not (rel[0] == "analyses" and len(rel) == 3 and rel[2] == MARKER):
            out[path] = (tables_dir.joinpath(*rel), "not listed by any manifest: never served")
    return list(out.values())
