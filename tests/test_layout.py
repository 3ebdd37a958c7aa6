"""The house rules of neudep_assets/lib: no Dagster, no import cycle, layers import one way, and the
config is pure data (importing it loads no torch)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from neudep_assets.lib.code_version import LIB, PKG, import_graph

# what each part of lib/ may not import (the layers of neudep_assets/lib/__init__.py)
FORBIDDEN = {
    "specs": {"config", "store", "data", "models", "covlasso", "analysis", "report"},
    "config": {"store", "data", "models", "covlasso", "analysis", "report"},
    "store": {"config", "data", "models", "covlasso", "analysis", "report"},
    "files": {"specs", "config", "store", "code_version", "data", "models", "covlasso", "analysis", "report"},
    "code_version": {"specs", "config", "store", "files", "data", "models", "covlasso", "analysis", "report"},
    "data": {"models", "covlasso", "analysis", "report"},
    "models": {"covlasso", "analysis", "report"},
    "covlasso": {"data", "models", "analysis", "report"},
    "analysis": {"models", "report"},
    "report": {"models"},
}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def _part(mod: str) -> str:
    rest = mod[len(PKG) + 1:]
    return rest.split(".")[0] if rest else ""


def test_lib_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_lib_layers_import_one_way():
    bad = [(m, t) for m, ts in import_graph().items() for t in ts
           if _part(t) in FORBIDDEN.get(_part(m), set()) - {_part(m)}]
    assert not bad, f"imports against the layers: {bad}"


def test_lib_never_imports_dagster():
    offenders = []
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(LIB)}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert not offenders


def test_config_import_loads_no_torch():
    code = ("import sys; import neudep_assets.lib.config, neudep_assets.lib.specs; "
            "print(sorted(m for m in ('torch', 'timm', 'dagster', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_checks_can_fail(toy_package):
    """The cycle finder and the graph builder see a cycle hidden in a function-level import."""
    pkg = toy_package({"a": "from toy import b\n", "b": "def f():\n    from toy.a import x\n"})
    g = import_graph(pkg, "toy")
    assert g["toy.a"] == {"toy.b"} and g["toy.b"] == {"toy.a"}
    assert find_cycle(g) == ["toy.a", "toy.b", "toy.a"]


@pytest.mark.parametrize("limit", [425])
def test_modules_stay_small(limit):
    """No module over ≈ 400 lines (the numba kernel is split: linear algebra, homotopy, drivers)."""
    big = {str(p.relative_to(LIB)): n for p in LIB.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > limit}
    assert not big
