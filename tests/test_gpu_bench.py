"""bench/gpu.py runs whole on a machine without Dagster, DuckDB or universal_pathlib (a bare GPU box), so that
a session lent a GPU measures it in one call: its --cpu-only table, its errors, its out-of-memory rows."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "bench" / "gpu.py"

# what a bare GPU machine lacks: any import of these fails, in the script and in its child processes
BLOCKER = '''
import importlib.abc, sys

class _Bare(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dagster", "duckdb", "upath", "pathlib_abc"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a bare GPU machine)")
        return None

sys.meta_path.insert(0, _Bare())
'''


def _bare_env(tmp_path):
    """An environment whose every Python process (sitecustomize) cannot import the blocked packages."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_WAIT_POLICY": "PASSIVE"}


def _load():
    spec = importlib.util.spec_from_file_location("bench_gpu", GPU)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_blocker_blocks(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import duckdb"], env=_bare_env(tmp_path), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "blocked: a bare GPU machine" in r.stderr


def test_cpu_only_run_has_every_row_and_they_agree(tmp_path):
    out = tmp_path / "table.json"
    r = subprocess.run([sys.executable, str(GPU), "--cpu-only", "--json", str(out)], env=_bare_env(tmp_path),
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "dagster/duckdb imported: neither" in r.stdout
    table = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    parts = [line.split(" | ")[0][2:] for line in table]
    assert parts == ["1 logits CNN", "1 logits 224 px", "2 training", "3 CovLasso", "4 scale n=300",
                     "5 scale n=200 grid"]
    assert all(line.split(" | ")[5] == "ok" for line in table), r.stdout
    assert re.search(r"same support (\d+)/\1,", table[3])  # every support of the torch homotopy = numba's
    doc = json.loads(out.read_text())
    assert doc["machine"]["forbidden_imported"] == [] and doc["machine"]["mode"] == "tiny"
    rows = {row["part"]: row for row in doc["rows"]}
    for part in ("1 logits CNN", "1 logits 224 px"):  # CPU against CPU: the same numbers
        assert rows[part]["figures"]["max_abs_diff"] == 0.0 and rows[part]["figures"]["top1"] == 1.0
    assert rows["2 training"]["figures"]["loss_diff"] == 0.0 and rows["2 training"]["figures"]["loss_cpu"] > 0
    for part, n_sol in (("3 CovLasso", 120 * 5), ("4 scale n=300", 40), ("5 scale n=200 grid", 40 * 5)):
        f = rows[part]["figures"]
        assert f["same_support"] == f["solutions"] == n_sol, part
        assert f["max_coef_diff"] < 1e-8 and max(f["kkt_dev"], f["kkt_numba"]) <= 1e-9, part
    for part, n in (("4 scale n=300", 300), ("5 scale n=200 grid", 200)):  # whole analyses, merged
        f = rows[part]["figures"]
        assert f["solved"] == n and f["certified"] == 1.0 and f["merge_s"] is not None, part
        assert "merge" in rows[part]["device"] and "PARTIAL" not in rows[part]["device"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, str(GPU), "--device", "cuda"], env=_bare_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    assert "'cuda' asked for, but CUDA is not available" in r.stderr and "--cpu-only" in r.stderr
    assert "| part |" not in r.stdout  # refused before any work


def test_out_of_memory_in_a_part_is_its_row_and_the_run_goes_on():
    import torch

    gpu = _load()

    def too_big(dev):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    row = gpu.run_row("4 scale n=21841", too_big, "cpu")
    assert row["status"] == "OOM" and "out of memory" in row["device"] and "20.00 GiB" in row["device"]
    assert row["ok"] is None and row["part"] == "4 scale n=21841"

    def broken(dev):
        raise KeyError("no such column")

    row = gpu.run_row("3 CovLasso", broken, "cpu")
    assert row["status"] == "FAILED" and "KeyError" in row["device"]


def test_lib_files_without_universal_pathlib_serves_local_paths_and_names_the_package_for_urls(tmp_path):
    code = ("from pathlib import Path\n"
            "from neudep_assets.lib.files import as_path, is_remote\n"
            "p = as_path('data/store')\n"
            "assert type(p) is type(Path()) and not is_remote(p), p\n"
            "try:\n"
            "    as_path('s3://bucket/store')\n"
            "except ModuleNotFoundError as e:\n"
            "    assert 'universal_pathlib' in str(e) and 's3://bucket/store' in str(e), e\n"
            "else:\n"
            "    raise AssertionError('a URL without universal_pathlib')\n")
    r = subprocess.run([sys.executable, "-c", code], env=_bare_env(tmp_path), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_scale_part_out_of_time_solves_its_first_chunk_and_extrapolates():
    gpu = _load()
    P = dict(gpu.SIZES["tiny"]["s21"], chunk=128, probe=100)
    row = gpu.part_scale("torch:cpu", P, deadline=0.0, reference=None)  # the deadline long past
    f = row["figures"]
    assert row["partial"] and f["solved"] == 100 and f["merge_s"] is None
    assert row["device"].startswith("PARTIAL (time budget): 100 of 300 targets") and "for all" in row["device"]
    assert f["same_support"] == f["solutions"] == 40 and f["certified"] == 1.0 and row["ok"]
