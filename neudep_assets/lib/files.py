"""Files written whole or not at all (fsynced, renamed into place; one put on an object store) and
array artifacts (no pickles), on local disk or under any fsspec URL."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
try:
    from upath import UPath
except ImportError:  # the compute stack alone (bench/gpu.py on a bare GPU machine): local paths only
    class UPath:  # noqa: D101 - a stand-in nothing is an instance of
        def __new__(cls, url):
            raise ModuleNotFoundError(f"{url!r} is a URL: paths other than local ones need universal_pathlib "
                                      "(pip install universal_pathlib)")

#: protocols fsspec serves from the local file system: such a URL is a plain local path here
LOCAL_PROTOCOLS = ("", "file", "local")


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


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write `files` (name -> bytes) into the private, existing `folder` and make them durable: the
    fsyncs run in parallel threads (they release the GIL), then the folder's. For a staging folder
    that is renamed into place afterwards (the rename is the commit)."""
    from concurrent.futures import ThreadPoolExecutor

    fds = []
    try:
        for name, data in files.items():
            fds.append(os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            with memoryview(data) as view:
                while view:
                    view = view[os.write(fds[-1], view):]
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(fds)))) as pool:
            list(pool.map(os.fsync, fds))
    finally:
        for fd in fds:
            os.close(fd)
    _fsync_dir(folder)


def as_path(path: str | os.PathLike) -> Path:
    """A local path as `Path`, any other fsspec URL (``memory://``, ``s3://``…) as `UPath`."""
    if isinstance(path, UPath) and path.protocol not in LOCAL_PROTOCOLS:
        return path
    text = os.fspath(path) if not isinstance(path, UPath) else str(path)
    if "://" not in text:
        return Path(text)
    upath = UPath(text)
    return Path(upath.path) if upath.protocol in LOCAL_PROTOCOLS else upath


def is_remote(path: Path) -> bool:
    return isinstance(path, UPath) and path.protocol not in LOCAL_PROTOCOLS


def put_whole(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file whole or not at all, wherever it is: `atomic_write` on local disk; elsewhere
    ``write`` fills a buffer that goes up in one put (``fs.pipe_file``), which object stores make
    visible whole or not at all (a local file system's rename is not available there)."""
    path = as_path(path)
    if not is_remote(path):
        return atomic_write(path, write)
    buf = io.BytesIO()
    write(buf)
    path.fs.pipe_file(path.path, buf.getvalue())
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


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Atomic `np.savez` (no pickled objects: object arrays are refused), local or any fsspec URL."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; store strings as a fixed-width unicode array")

    return put_whole(path, lambda fh: np.savez(fh, **arrays))


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load an artifact written by `save_arrays` (a local path or an fsspec URL); never unpickles."""
    path = as_path(path)
    try:
        found = path.is_file()
    except Exception as exc:  # an unreachable object store
        raise StoreError(f"artifact unreachable: {path}: {exc}") from exc
    if not found:
        raise StoreError(f"artifact missing: {path}")
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/ValueError/OSError on a truncated or foreign file
        raise StoreError(f"artifact unreadable (corrupt or truncated?): {path}: {exc}") from exc
