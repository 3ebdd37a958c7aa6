"""Code versions that follow the code: a hash of the source of the lib modules an asset uses,
transitively within `neudep_assets/lib` (so a change to the maths marks exactly the assets that
depend on it stale, and enters their content-addressed keys). The bottom layer (specs, config,
store, files and this module) is not science: configs enter the keys as values, and a new store table
must not retrain a model. Pure standard library."""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

LIB = Path(__file__).resolve().parent
PKG = "neudep_assets.lib"
NOT_SCIENCE = ("specs", "config", "store", "files", "code_version")


def _module_name(path: Path, root: Path, pkg: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([pkg, *parts])


def import_graph(root: Path = LIB, pkg: str = PKG) -> dict[str, set[str]]:
    """Module → the modules of `pkg` it imports, anywhere in its body (function-level imports too).
    `from a.b import c` is an edge to a.b.c when c is a module, else to a.b."""
    return {m: set(ts) for m, (ts, _) in _scan(Path(root), pkg).items()}


def _scan(root: Path, pkg: str) -> dict[str, tuple[frozenset[str], bytes]]:
    """Module → (the modules of `pkg` it imports, its source); re-read when a file changes."""
    files = sorted(root.rglob("*.py"))
    return _scan_files(root, pkg, tuple((p, p.stat().st_mtime_ns, p.stat().st_size) for p in files))


@lru_cache(maxsize=16)
def _scan_files(root: Path, pkg: str, stamps: tuple) -> dict[str, tuple[frozenset[str], bytes]]:
    files = {_module_name(p, root, pkg): p for p, *_ in stamps}
    out = {}
    for mod, path in files.items():
        source = path.read_bytes()
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(source, str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            targets |= {t for t in names if t == pkg or t.startswith(pkg + ".")}
        out[mod] = (frozenset(targets), source)
    return out


def closure(*modules: str, root: Path = LIB, pkg: str = PKG) -> list[str]:
    """The science modules of `pkg` that `modules` import, transitively (themselves included), sorted."""
    scan = _scan(Path(root), pkg)
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen or m.removeprefix(pkg + ".").split(".")[0] in NOT_SCIENCE:
            continue
        if m not in scan:
            raise KeyError(f"{m} is not a module of {pkg} under {root}")
        seen.add(m)
        todo += scan[m][0]
    return sorted(seen)


def code_version(*modules: str, root: Path = LIB, pkg: str = PKG) -> str:
    """sha256 (first 16 hex digits) of the source of `modules` and of everything they import in `pkg`."""
    scan = _scan(Path(root), pkg)
    h = hashlib.sha256()
    for m in closure(*modules, root=root, pkg=pkg):
        h.update(m.encode() + b"\0" + hashlib.sha256(scan[m][1]).digest())
    return h.hexdigest()[:16]
