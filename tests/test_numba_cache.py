"""numba's cache follows a change in a kernel's callee in another file (lib/numba_cache.py): numba alone keeps
the caller's stale machine code."""

import subprocess
import sys
import textwrap

CALLEE = "from numba import njit\n\n\n@njit(cache=True)\ndef g(x):\n    return x + {}\n"
CALLER = "from numba import njit\n\nfrom pkg.b import g\n\n\n@njit(cache=True)\ndef f(x):\n    return g(x) * 2\n"


def _run(tmp_path, sync: bool) -> int:
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        from pathlib import Path
        from neudep_assets.lib import numba_cache
        if {sync}:
            numba_cache.sync(Path({str(tmp_path / "pkg")!r}))
        from pkg.a import f
        print(f(1))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_a_changed_callee_recompiles_its_caller(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(CALLER)
    (pkg / "b.py").write_text(CALLEE.format(1))
    assert _run(tmp_path, sync=True) == 4
    (pkg / "b.py").write_text(CALLEE.format(10))
    assert _run(tmp_path, sync=False) == 4  # numba alone: f's cached code still holds the old g (stale)
    assert _run(tmp_path, sync=True) == 22  # the sources' hash changed: caches dropped, f compiled afresh
    assert _run(tmp_path, sync=True) == 22  # and cached again under the new hash
    assert list(pkg.glob("__pycache__/a.f-*.nbi"))
