"""Store integrity, tried as an attacker and as a careless user would (issue 18): the SQL sandbox,
manifests, `neudep check`, links. Each case failed on the store before manifests and the sandbox."""

import hashlib
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neudep_assets.cli import main
from neudep_assets.lib.store import MARKER, TABLES, ResultStore, StoreError, StoreWarning
from neudep_assets.lib.store_manifest import SIDECAR
from tests.test_store_faults import analysis_tables, counts

FULL = {"dependency_runs": 1, "dependencies": 3, "dependency_metrics": 3, "class_diagnostics": 3}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_analysis(new_store):
    store = new_store()
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    store.write("classes", "d", [{"dataset_id": "d", "class_index": i, "name": f"c{i}"} for i in range(3)],
                run_id="r", code_version="v")
    return store


def cli_check(store: ResultStore, monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setenv("NEUDEP_DATA", str(store.root))
    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    capsys.readouterr()
    try:
        main(["check", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().out


# -- the SQL sandbox -------------------------------------------------------------------------

def test_no_statement_writes_a_committed_file(new_store, tmp_path):
    """EXPLAIN ANALYZE COPY passed the old SELECT/EXPLAIN filter and replaced every coefficient."""
    store = one_analysis(new_store)
    target = store.analysis_dir("a1") / "dependencies.parquet"
    before = target.read_bytes()
    for sql in (f"EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{target}' (FORMAT parquet)",
                f"EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{tmp_path / 'new.parquet'}' (FORMAT parquet)",
                f"COPY (SELECT 42 AS x) TO '{tmp_path / 'x.csv'}'"):
        with pytest.raises((duckdb.Error, StoreError), match="disabled by configuration|read-only"):
            store.query(sql)
        with store.connect() as con:  # the sandbox alone, without the statement filter, refuses it too
            with pytest.raises(duckdb.Error, match="disabled by configuration"):
                con.execute(sql)
    with store.connect() as con:
        for sql in ("EXPORT DATABASE '{}'".format(tmp_path / "dump"), f"ATTACH '{tmp_path / 'db.duckdb'}'",
                    "SET enable_external_access = true"):
            with pytest.raises(duckdb.Error, match="disabled|locked"):
                con.execute(sql)
    assert target.read_bytes() == before and not list(tmp_path.glob("*.parquet")) + list(tmp_path.glob("*.csv"))
    assert not (tmp_path / "dump").exists() and not (tmp_path / "db.duckdb").exists()
    assert not store.check() and counts(store) == FULL


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd', sep = ':')", "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')", "SELECT * FROM glob('{home}/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')", "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT * FROM read_parquet('{committed}')", "ATTACH '{tmp}/other.duckdb'", "EXPORT DATABASE '{tmp}/dump'",
    "INSTALL httpfs", "LOAD httpfs", "SET enable_external_access = true", "SET temp_directory = '{tmp}'",
    "SELECT * FROM read_parquet('{remote}')"])
def test_the_sandbox_reads_nothing_outside_the_store(new_store, tmp_path, sql):
    """read_csv of a system file, read_text, glob of the home folder and http URLs worked; a store
    file by its path, or a memory:// URL, is refused too: the views are the only way in."""
    store = one_analysis(new_store)
    committed = store.analysis_dir("a1") / "dependencies.parquet"
    text = sql.format(home=Path.home(), committed=committed, tmp=tmp_path, remote=f"memory://{uuid.uuid4().hex}/x")
    with pytest.raises((duckdb.Error, StoreError), match="disabled|locked|read-only|not a query|refused"):
        store.query(text)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("data",)]
    assert counts(store) == FULL


def test_one_statement_per_call(new_store):
    store = one_analysis(new_store)
    for sql in ("SELECT 1; SELECT 2", "SELECT 1; COPY (SELECT 1) TO 'x.csv'", "-- nothing"):
        with pytest.raises(StoreError, match="one SQL statement per call"):
            store.query(sql)
    assert store.query("SELECT 1 AS x; ")["x"].tolist() == [1]


def test_param_values_stay_strings_unless_typed(tmp_path, monkeypatch, capsys):
    """`--param old=025` became the integer 25 (≈ 6% of 6-character sha prefixes are all digits)."""
    store = ResultStore(tmp_path)
    store.write("checkpoints", "s", [{"checkpoint_sha256": "025abc", "model": "m"}], run_id="r", code_version="v")
    monkeypatch.setenv("NEUDEP_DATA", str(tmp_path))
    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    capsys.readouterr()
    main(["sql", "SELECT model, typeof($old) AS t FROM checkpoints WHERE starts_with(checkpoint_sha256, $old)",
          "--param", "old=025"])
    assert capsys.readouterr().out.split() == ["model", "t", "m", "VARCHAR"]
    main(["sql", "SELECT $n + 1 AS n, typeof($x) AS x, $b AS b", "--param", "n:int=3", "--param", "x:float=0.5",
          "--param", "b:bool=true"])
    assert capsys.readouterr().out.split() == ["n", "x", "b", "4", "DOUBLE", "True"]
    for bad in ("n:int=3.5", "n:complex=1", "noequals", "b:bool=yes"):
        with pytest.raises(SystemExit, match="--param"):
            main(["sql", "SELECT 1", "--param", bad])


# -- manifests: exactly what was committed is served ------------------------------------------

def test_a_copied_analysis_folder_is_never_served(tmp_path, monkeypatch, capsys):
    """`cp -r analyses/X analyses/X.bak` doubled dependency_lineage and `check` said ok."""
    store = one_analysis(lambda: ResultStore(tmp_path))
    store.ensure_catalog()
    shutil.copytree(store.analysis_dir("a1"), store.analyses_dir / "a1.bak")
    assert counts(store) == FULL and not store.has_analysis("a1.bak")
    with duckdb.connect(str(store.ensure_catalog()), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dependencies").fetchone() == (3,)
    code, out = cli_check(store, monkeypatch, capsys)
    assert code == 1 and f"not served: {store.analyses_dir / 'a1.bak'}" in out and "a copy" in out


def test_stray_files_and_foreign_schemas_are_never_served(new_store, tmp_path):
    """A valid Parquet file of another schema dropped into store/classes/ (and a copied single-key
    file with its manifest) is not served; one replacing a committed file is named by `check`."""
    store = one_analysis(new_store)
    foreign = pa.table({"x": [1, 2]})
    pq.write_table(foreign, str(tmp_path / "f.parquet"))
    (store.tables_dir / "classes" / "dropped.parquet").write_bytes((tmp_path / "f.parquet").read_bytes())
    for name in ("copy.parquet", f"copy{SIDECAR}"):
        src = store.tables_dir / "classes" / name.replace("copy", "d")
        (store.tables_dir / "classes" / name).write_bytes(src.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(store.query("SELECT * FROM classes")) == 3
    assert not store.has("classes", "copy") and not store.has("classes", "dropped")
    assert {p.name for p, _ in store.strays()} == {"dropped.parquet", "copy.parquet", f"copy{SIDECAR}"}
    committed = store.table_file("classes", "d")
    committed.write_bytes((tmp_path / "f.parquet").read_bytes())
    assert [(p, why) for p, why in store.check() if "classes" in str(p)][0][0] == committed
    assert not store.has("classes", "d")
    with pytest.warns(StoreWarning, match="d.parquet"):
        assert len(store.query("SELECT * FROM classes")) == 0


def _flip_in_data_page(path: Path, column: str) -> None:
    meta = pq.read_metadata(pa.BufferReader(path.read_bytes()))
    chunk = meta.row_group(0).column(meta.schema.to_arrow_schema().get_field_index(column))
    at = chunk.data_page_offset + chunk.total_compressed_size - (chunk.data_page_offset - (chunk.dictionary_page_offset
                                                                                          or chunk.data_page_offset)) - 3
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_found_and_never_served(new_store, monkeypatch, capsys):
    """One flipped byte inside a data page: `check` said ok and a coefficient sum changed."""
    store = one_analysis(new_store)
    target = store.analysis_dir("a1") / "dependencies.parquet"
    _flip_in_data_page(target, "coef")
    assert [(p, "sha256" in why and "analysis a1" in why) for p, why in store.check()] == [(target, True)]
    try:
        got = store.query("SELECT sum(coef) AS s FROM dependencies")["s"][0]
    except StoreError as exc:  # the page's CRC fails: an error, never other numbers
        assert "checksum" in str(exc) and "neudep check" in str(exc), exc
    else:
        assert got == 1.5
    with pytest.warns(StoreWarning, match="moved"):
        assert len(store.quarantine()) == 1
    assert not store.check() and not store.has_analysis("a1") and counts(store)["dependencies"] == 0
    store.commit_analysis("a1", analysis_tables("a1"), run_id="rerun", code_version="v")
    assert counts(store) == FULL and not store.check()


@pytest.mark.parametrize("table", ["dependencies", "classes"])
def test_random_bytes_between_intact_magic_are_left_out_and_quarantined(new_store, table, monkeypatch, capsys):
    """`check` said ok, `--quarantine` moved nothing and every query failed ("Footer length error")."""
    store = one_analysis(new_store)
    target = store.analysis_dir("a1") / f"{table}.parquet" if table != "classes" else store.table_file("classes", "d")
    size = len(target.read_bytes())
    target.write_bytes(b"PAR1" + os.urandom(size - 8) + b"PAR1")
    assert not (store.has_analysis("a1") if table != "classes" else store.has("classes", "d"))
    with pytest.warns(StoreWarning, match=re.escape(str(target))):
        c = counts(store)  # the rest of the store still answers
    assert c == (dict.fromkeys(FULL, 0) if table != "classes" else FULL)
    assert [p for p, _ in store.check()] == [target]
    if store.remote:
        with pytest.warns(StoreWarning, match="moved"):
            store.quarantine()
    else:
        code, out = cli_check(store, monkeypatch, capsys, "--quarantine")
        assert code == 1 and str(target) in out and "moved aside" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts(store), store.query("SELECT * FROM classes")
    assert not store.check()


def test_check_names_a_missing_file_and_passes_a_clean_store(tmp_path, monkeypatch, capsys):
    store = one_analysis(lambda: ResultStore(tmp_path))
    code, out = cli_check(store, monkeypatch, capsys)
    assert code == 0 and "store ok" in out and "sha256" in out
    (store.analysis_dir("a1") / "class_diagnostics.parquet").unlink()
    code, out = cli_check(store, monkeypatch, capsys)
    assert code == 1 and "class_diagnostics.parquet (analysis a1: missing)" in out
    assert not store.has_analysis("a1")


@pytest.mark.parametrize("die_at", [1, 2, 3])
def test_rewriting_a_single_key_is_atomic_for_readers(new_store, monkeypatch, die_at):
    """A writer replacing a committed key dies after its n-th put (manifest old+new, data, manifest
    new): a reader always gets one genuine version, whole, and `check` finds nothing wrong."""
    import neudep_assets.lib.store as store_mod

    store = new_store()
    rows = [{"dataset_id": "d", "class_index": 0, "name": "old"}]
    store.write("classes", "d", rows, run_id="r", code_version="v")
    put, n = store_mod.put_whole, []

    def dying(path, write):
        n.append(path)
        if len(n) == die_at:
            raise KeyboardInterrupt("killed")
        return put(path, write)

    monkeypatch.setattr(store_mod, "put_whole", dying)
    with pytest.raises(KeyboardInterrupt):
        store.write("classes", "d", [{**rows[0], "name": "new one"}], run_id="r", code_version="v")
    monkeypatch.setattr(store_mod, "put_whole", put)
    assert store.has("classes", "d") and not store.check()
    assert store.read("classes", "d")["name"].tolist() == [["old", "old", "new one"][die_at - 1]]


# -- links ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["store", "store/.staging", "store/analyses", "store/classes", "artifacts"])
def test_a_store_whose_own_folder_is_a_link_is_refused(tmp_path, folder):
    """A symlinked store/.staging made the sweep delete every entry of the folder it pointed to."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("mine")
    (outside / "sub" / "deep.txt").write_text("mine")
    root = tmp_path / "data"
    (root / folder).parent.mkdir(parents=True, exist_ok=True)
    (root / folder).symlink_to(outside)
    with pytest.raises(StoreError, match=re.escape(str(root / folder)) + ".*symbolic link"):
        ResultStore(root)
    assert (outside / "keep.txt").read_text() == "mine" and (outside / "sub" / "deep.txt").exists()


def test_sweeps_and_quarantine_remove_links_never_their_targets(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    store = ResultStore(tmp_path / "data")
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    (store.staging_dir / "a9.0123").symlink_to(outside)  # a leftover that is a link
    (store.tables_dir / "classes").mkdir()
    (store.tables_dir / "classes" / ".d.parquet.x.tmp").symlink_to(outside / "keep.txt")
    # an analysis folder that is a link to a copy of a committed one: never served, never moved through
    shutil.copytree(store.analysis_dir("a1"), outside / "a2")
    (store.analyses_dir / "a2").symlink_to(outside / "a2")
    assert not store.has_analysis("a2") and counts(store) == FULL
    assert any(p.name == "a2" and "link" in why for p, why in store.strays())
    store.write("classes", "d", [{"dataset_id": "d", "class_index": 0}], run_id="r", code_version="v")
    store.commit_analysis("a2", analysis_tables("a2", sha="c2"), run_id="r", code_version="v")
    assert (outside / "keep.txt").read_text() == "mine" and sorted(p.name for p in (outside / "a2").iterdir()) == \
        sorted(p.name for p in store.analysis_dir("a1").iterdir())
    assert not list(store.staging_dir.iterdir()) and counts(store)["dependency_runs"] == 2
    assert MARKER in {p.name for p in store.analysis_dir("a2").iterdir()} and not store.analysis_dir("a2").is_symlink()


def test_string_params_work_in_the_cookbook(tmp_path):
    """`neudep sql --param at_most=0.2` binds a string: the cookbook casts it, and refuses a bad one."""
    store = ResultStore(tmp_path)
    text = (Path(__file__).resolve().parents[1] / "sql" / "queries" / "sparsest_dependency.sql").read_text()
    assert store.query(text, {"model": "p", "bound": "rel_err", "at_most": "0.05"}).empty
    for bad in ("abc", "0", "1.5"):
        with pytest.raises(duckdb.Error, match="at_most"):
            store.query(text, {"model": "p", "bound": "rel_err", "at_most": bad})


def test_catalog_lists_files_not_globs(tmp_path):
    """The user catalog names each committed file; a commit brings an existing catalog up to date."""
    store = one_analysis(lambda: ResultStore(tmp_path))
    path = store.ensure_catalog()
    store.commit_analysis("a2", analysis_tables("a2", sha="c2"), run_id="r", code_version="v")
    with duckdb.connect(str(path), read_only=True) as con:
        sql = " ".join(s for (s,) in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall())
        assert con.execute("SELECT count(*) FROM dependencies").fetchone() == (6,)
    assert "*" not in re.sub(r"SELECT \*|\* FROM|count\(\*\)|\*\)", "", sql.split("latest_dependency_runs")[0])
    assert str(store.analysis_dir("a2") / "dependencies.parquet") in sql
    assert TABLES.keys() <= {v for v in re.findall(r"CREATE VIEW (\w+)", sql)}


def test_the_integrity_bench_runs_at_a_small_size(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_store_integrity", Path(__file__).resolve().parents[1]
                                                  / "bench" / "store_integrity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--classes", "30", "--lambdas", "3", "--sources", "4", "--analyses", "1"])
    out = capsys.readouterr().out
    assert "1 analyses of 30 targets" in out and re.search(r"neudep check: [\d.]+ s .* ok", out)


def test_a_copied_analysis_on_an_object_store_is_named_not_served(tmp_path):
    store = ResultStore(tmp_path / "data", f"memory://neudep-test-{uuid.uuid4().hex}/s")
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    for p in store.analysis_dir("a1").iterdir():
        (store.analyses_dir / "a1.bak" / p.name).write_bytes(p.read_bytes())
    assert counts(store) == FULL and not store.has_analysis("a1.bak")
    assert [(p.name, "copy" in why) for p, why in store.strays()] == [("a1.bak", True)]
