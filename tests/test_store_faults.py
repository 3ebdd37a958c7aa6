"""The store under faults: a killed writer, two writers, leftovers, bad files, copied roots, readers
holding the catalog. Each case says what it proves."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from neudep_assets.lib.store import ResultStore, StoreError, StoreWarning

ROOT = Path(__file__).resolve().parents[1]


def analysis_tables(key: str, n: int = 3, model: str = "m", sha: str = "c1") -> dict:
    """A small complete analysis: n targets at one λ, each depending on the next class."""
    return {
        "dependencies": pd.DataFrame({"dependency_run_id": key, "lambda_index": 0, "target_class": range(n),
                                      "source_class": [(i + 1) % n for i in range(n)], "coef": 0.5}),
        "dependency_metrics": pd.DataFrame({"dependency_run_id": key, "lambda_index": 0, "target_class": range(n),
                                            "kkt": 0.0, "n_sources": 1, "rel_err": 0.1}),
        "class_diagnostics": pd.DataFrame({"dependency_run_id": key, "target_class": range(n), "rank": n}),
        "dependency_runs": [{"dependency_run_id": key, "kind": "within", "lambda_index": 0, "lambda_rel": 0.1,
                             "lambda_mode": "relative", "model": model, "source_model": model,
                             "checkpoint_sha256": sha, "dataset_id": "d"}],
    }


def counts(store: ResultStore) -> dict:
    return {t: int(store.query(f"SELECT count(*) AS n FROM {t}")["n"][0])
            for t in ("dependency_runs", "dependencies", "dependency_metrics", "class_diagnostics")}


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.communicate()}")
        assert time.time() - t0 < timeout, "child never got there"
        time.sleep(0.02)


def test_an_analysis_lands_whole_or_not_at_all(new_store):
    """Bad input in one table of an analysis (an unknown column) commits none of its tables."""
    store = new_store()
    tables = analysis_tables("a1")
    tables["class_diagnostics"]["oops"] = 1
    with pytest.raises(StoreError, match="class_diagnostics: unexpected columns"):
        store.commit_analysis("a1", tables, run_id="r", code_version="v")
    assert not store.has_analysis("a1") and counts(store) == dict.fromkeys(counts(store), 0)
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    assert counts(store) == {"dependency_runs": 1, "dependencies": 3, "dependency_metrics": 3, "class_diagnostics": 3}
    assert store.read("dependency_runs", "a1")["code_version"].tolist() == ["v"]


KILLED_WRITER = """
    import sys, time
    from pathlib import Path
    import pyarrow.parquet as pq
    from tests.test_store_faults import analysis_tables
    from neudep_assets.lib.store import ResultStore
    write, n = pq.write_table, []
    def slow(*a, **k):  # write the first table whole, half-write the second, then hang there
        n.append(1)
        if len(n) == 2:
            a[1].write(b"PAR1 half a table")
            a[1].flush()
            Path(sys.argv[2]).touch()
            time.sleep(600)
        return write(*a, **k)
    pq.write_table = slow
    ResultStore(sys.argv[1]).commit_analysis("a1", analysis_tables("a1"), run_id="killed", code_version="v")
"""


def test_sigkill_while_committing_leaves_nothing_visible_and_the_rerun_completes(tmp_path):
    """A writer killed (SIGKILL) mid-commit: no row of it in any view (raw tables included), its
    staging leftovers are swept by the next write, and the rerun commits the whole analysis."""
    store = ResultStore(tmp_path)
    flag = tmp_path / "half-written"
    proc = _python(KILLED_WRITER, str(tmp_path), str(flag))
    _wait_for(flag, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(store.staging_dir.iterdir())  # the killed writer's files are there, but not visible
    assert counts(store) == dict.fromkeys(counts(store), 0)
    assert not store.has_analysis("a1") and not store.has("dependencies", "a1")
    store.commit_analysis("a1", analysis_tables("a1"), run_id="rerun", code_version="v")
    assert counts(store) == {"dependency_runs": 1, "dependencies": 3, "dependency_metrics": 3, "class_diagnostics": 3}
    assert not list(store.staging_dir.iterdir())
    assert set(store.query("SELECT DISTINCT dagster_run_id FROM dependencies")["dagster_run_id"]) == {"rerun"}


TWO_WRITERS = """
    import sys, time
    from tests.test_store_faults import analysis_tables
    from neudep_assets.lib.store import ResultStore
    store = ResultStore(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    with store.lock("analyses/a1"):
        if store.has_analysis("a1"):
            print("found")
        else:
            time.sleep(0.3)  # computing
            store.commit_analysis("a1", analysis_tables("a1"), run_id=sys.argv[2], code_version="v")
            print("computed")
"""


def _together(procs: list[subprocess.Popen]) -> list[tuple[str, str]]:
    """Release the processes at once, when all have started; their (stdout, stderr) after 'ready'."""
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.communicate()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return outs


def test_two_writers_of_one_key_end_with_exactly_one_complete_analysis(tmp_path):
    """Two processes writing the same analysis at once: one computes and commits, the other waits
    and finds it; one complete analysis, no duplicate rows, no leftovers."""
    outs = _together([_python(TWO_WRITERS, str(tmp_path), f"w{i}") for i in range(2)])
    assert sorted(o.strip() for o, _ in outs) == ["computed", "found"], outs
    store = ResultStore(tmp_path)
    assert counts(store) == {"dependency_runs": 1, "dependencies": 3, "dependency_metrics": 3, "class_diagnostics": 3}
    assert not list(store.staging_dir.iterdir())


def test_concurrent_commits_without_the_callers_lock_still_leave_one_analysis(tmp_path):
    """commit_analysis itself is one writer per key: two racing commits of a key leave one analysis."""
    code = TWO_WRITERS.replace('with store.lock("analyses/a1"):', "if True:").replace(
        'if store.has_analysis("a1"):', "if False:")
    procs = [_python(code, str(tmp_path), f"w{i}") for i in range(2)]
    _together(procs)
    store = ResultStore(tmp_path)
    assert counts(store)["dependencies"] == 3 and len(store.query("SELECT * FROM dependency_runs")) == 1


def test_leftover_temp_files_are_swept_by_the_next_write_but_not_a_live_writers(tmp_path):
    """`*.parquet.tmp` and staging folders of dead writers go on the next write; those of a writer
    that still holds its key's lock stay."""
    store = ResultStore(tmp_path)
    store.write("classes", "d1", [{"dataset_id": "d1", "class_index": 0}], run_id="r", code_version="v")
    dead_tmp = store.tables_dir / "classes" / ".d1.parquet.abc123.tmp"
    live_tmp = store.tables_dir / "classes" / ".d2.parquet.def456.tmp"
    dead_stage = store.staging_dir / "a1.0123abcd"
    for p in (dead_tmp, live_tmp):
        p.write_bytes(b"half")
    dead_stage.mkdir(parents=True)
    (dead_stage / "dependencies.parquet").write_bytes(b"half")
    holder = _python("""
        import sys, fcntl, os
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.read()
    """, str(store.locks_dir / "classes" / "d2.lock"))
    (store.locks_dir / "classes").mkdir(parents=True, exist_ok=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        store.write("classes", "d3", [{"dataset_id": "d3", "class_index": 0}], run_id="r", code_version="v")
        assert not dead_tmp.exists() and not dead_stage.exists() and live_tmp.exists()
    finally:
        holder.communicate("")


@pytest.mark.parametrize("damage", ["zero_length", "truncated"])
def test_a_bad_parquet_file_is_named_and_other_tables_still_work(new_store, damage):
    """A zero-length or truncated committed file: `check` names it, queries of its own table go on
    without it (with a StoreWarning naming the file), and the other tables are untouched (local
    root, and a memory:// root where the marker's size gives it away)."""
    store = new_store()
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    store.commit_analysis("a2", analysis_tables("a2", sha="c2"), run_id="r", code_version="v")
    store.write("classes", "d", [{"dataset_id": "d", "class_index": 0, "name": "zero"}], run_id="r", code_version="v")
    bad = store.analysis_dir("a2") / "dependencies.parquet"
    bad.write_bytes(b"" if damage == "zero_length" else bad.read_bytes()[:-40])
    assert [p for p, _ in store.check()] == [bad]
    with pytest.warns(StoreWarning, match=re.escape(str(bad))):  # left out with the rest of its analysis
        c = counts(store)
    assert c == {"dependency_runs": 1, "dependencies": 3, "dependency_metrics": 3, "class_diagnostics": 3}
    with pytest.warns(StoreWarning):
        assert store.query("SELECT name FROM classes")["name"].tolist() == ["zero"]
    with pytest.raises(StoreError, match="dependencies.parquet"):
        store.read("dependencies", "a2")
    assert store.has_analysis("a1") and not store.has_analysis("a2")  # so a rerun recomputes it
    if store.remote:  # no catalog there (nor a memory:// root in another process): set aside, recompute
        with pytest.warns(StoreWarning, match=f"{re.escape(str(bad))}.*moved"):
            assert len(store.quarantine()) == 1
        assert not store.check() and counts(store)["dependency_runs"] == 1
        store.commit_analysis("a2", analysis_tables("a2", sha="c2"), run_id="rerun", code_version="v")
        assert counts(store)["dependency_runs"] == 2 and not store.check()
        return
    out = subprocess.run([sys.executable, "-m", "neudep_assets.cli", "check"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "NEUDEP_DATA": str(store.root)})
    assert out.returncode == 1 and str(bad) in out.stdout + out.stderr
    # the catalog for users lists the files that pass: the damaged analysis is left out, named
    with pytest.warns(StoreWarning, match=f"{re.escape(str(bad))}.*left out|left out.*{re.escape(str(bad))}"):
        path = store.ensure_catalog()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM classes").fetchone() == (1,)
        assert con.execute("SELECT count(*), count(DISTINCT dependency_run_id) FROM dependencies").fetchone() == (3, 1)
    store.commit_analysis("a2", analysis_tables("a2", sha="c2"), run_id="rerun", code_version="v")
    assert counts(store)["dependency_runs"] == 2 and not store.check()


def test_a_copied_data_root_queries_its_own_files(tmp_path):
    """Copy a data root (catalog included), change the copy: queries through neudep and through the
    copy's own neudep.duckdb (once neudep has touched it) read the copy, not the original."""
    a = ResultStore(tmp_path / "a")
    a.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    a.ensure_catalog()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    b = ResultStore(tmp_path / "b")
    b.commit_analysis("a2", analysis_tables("a2", n=5), run_id="r", code_version="v")
    assert counts(a)["dependencies"] == 3 and counts(b)["dependencies"] == 8
    b.ensure_catalog()
    with duckdb.connect(str(b.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dependencies").fetchone() == (8,)
        assert con.execute("SELECT root FROM neudep_schema").fetchone() == (str(b.root),)
    with duckdb.connect(str(a.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dependencies").fetchone() == (3,)


HOLDER = """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    if sys.argv[2] == "rw":
        con.execute("CREATE TABLE mine AS SELECT 42 AS x")
    print("open", flush=True)
    for line in sys.stdin:  # one query per line, answered while neudep runs
        print(con.execute(line).fetchall(), flush=True)
"""


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_reader_holding_the_catalog_keeps_its_view_and_its_tables(tmp_path, mode, monkeypatch):
    """A user holds neudep.duckdb open (read-write with a table of their own, or read-only) while
    analyses are committed and queried, and while the catalog's version changes: nothing fails,
    the user keeps the files listed when the catalog was last written (explicit lists, never globs),
    their table survives, and the catalog lists the new analysis once released."""
    import neudep_assets.lib.store as store_mod

    store = ResultStore(tmp_path)
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    with duckdb.connect(str(store.ensure_catalog()), read_only=True) as con:
        version = con.execute("SELECT version FROM neudep_schema").fetchone()[0]
    holder = _python(HOLDER, str(store.catalog_path), mode)
    assert holder.stdout.readline().strip() == "open"
    try:
        store.commit_analysis("a2", analysis_tables("a2", sha="c2"), run_id="r", code_version="v")
        assert counts(store)["dependency_runs"] == 2  # a run's own queries never open the user's file
        monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 99)  # a newer neudep: the catalog is due an update
        with pytest.warns(StoreWarning, match="in use") if mode == "ro" else contextlib.nullcontext():
            store.ensure_catalog()  # never rebuilt under a reader
        holder.stdin.write("SELECT count(*) FROM dependency_runs\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "[(1,)]"
        if mode == "rw":
            holder.stdin.write("SELECT x FROM mine\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "[(42,)]"
    finally:
        holder.communicate("", timeout=60)
    store.ensure_catalog()  # released: updated in place
    with duckdb.connect(str(store.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dependency_runs").fetchone() == (2,)
        assert con.execute("SELECT version FROM neudep_schema").fetchone()[0] != version
        if mode == "rw":
            assert con.execute("SELECT x FROM mine").fetchall() == [(42,)]


def test_a_stale_catalog_is_updated_in_place_keeping_users_tables(tmp_path):
    """A catalog of another version (an older neudep, or another root) is brought up to date in place:
    a user's own table in it survives, and it is not rebuilt when its version already matches."""
    store = ResultStore(tmp_path)
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    with duckdb.connect(str(store.catalog_path)) as con:  # an old catalog: no views, version 1
        con.execute("CREATE TABLE neudep_schema AS SELECT 1 AS version; CREATE TABLE mine AS SELECT 7 AS x")
    store.ensure_catalog()
    stamp = store.catalog_path.stat().st_mtime_ns
    store.ensure_catalog()
    assert store.catalog_path.stat().st_mtime_ns == stamp
    with duckdb.connect(str(store.catalog_path), read_only=True) as con:
        assert con.execute("SELECT x FROM mine").fetchall() == [(7,)]
        assert con.execute("SELECT count(*) FROM dependencies").fetchone() == (3,)


def test_a_base_view_added_to_schema_sql_still_reads_committed_analyses_only(tmp_path, monkeypatch, new_store):
    """A line in sql/schema.sql that defines a table's view the old way (a glob over store/<table>/)
    cannot hide committed analyses or show a crashed writer's files: base views come from TABLES."""
    import neudep_assets.lib.store as store_mod

    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "schema.sql").write_text((store_mod.SQL_DIR / "schema.sql").read_text() + "\n-- the old way\nCREATE OR REPLACE VIEW "
                                    "dependencies AS SELECT * FROM read_parquet('{{STORE}}/dependencies/*.parquet');\n")
    monkeypatch.setattr(store_mod, "SQL_DIR", sql)
    store = new_store()
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    assert counts(store)["dependencies"] == 3
    if store.remote:
        assert store.ensure_catalog() is None
        return
    with duckdb.connect(str(store.ensure_catalog()), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dependencies").fetchone() == (3,)
