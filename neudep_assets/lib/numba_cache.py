"""numba's on-disk cache kept in step with the sources.

numba keys each cached function on its own file only ("Cache invalidation" in numba's docs): after an
update that changes a kernel in ``numba_linalg.py`` but not its caller in ``numba_kernel.py``, the caller's
cached machine code, with the old kernel compiled in, would still be loaded and give old results. So at
import the sources of every module under ``lib`` that uses numba are hashed together, and when the hash
differs from the one the cache was built with, the cache files (``*.nbi``, ``*.nbc`` in ``__pycache__``)
are removed and numba compiles afresh. Hand-written: numba offers no dependency-aware invalidation.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

STAMP = "neudep-numba-sources.sha256"


def sources_digest(root: Path) -> str:
    """sha256 over the path and bytes of every ``*.py`` file under `root` that imports numba."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        data = p.read_bytes()
        if b"numba" in data:
            h.update(str(p.relative_to(root)).encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def sync(root: Path) -> bool:
    """Remove numba's cache files under `root` if its numba sources changed since they were built; returns
    whether it removed them. A read-only tree is left alone (numba then caches elsewhere or not at all)."""
    digest = sources_digest(root)
    stamp = root / "__pycache__" / STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        for f in [*root.rglob("__pycache__/*.nbi"), *root.rglob("__pycache__/*.nbc")]:
            f.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        tmp = stamp.with_name(f"{STAMP}.{os.getpid()}")
        tmp.write_text(digest)
        os.replace(tmp, stamp)  # atomic: concurrent imports (Dask workers, test workers) agree
    except OSError:
        return False
    return True
