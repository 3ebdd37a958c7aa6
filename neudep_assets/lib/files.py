"""Files written whole or not at all (fsynced, renamed into place) and array artifacts (no pickles)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np


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
