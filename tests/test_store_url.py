"""The store root as an fsspec URL: an object store (memory://, no rename) commits an analysis by its
marker, written last; bad URLs fail before any work naming the config key; the tiny pipeline on a
memory:// store gives the same rows as on the data root."""

import io
import uuid
import warnings
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from upath import UPath

import neudep_assets.lib.store as store_mod
import neudep_assets.lib.store_objects as store_objects
from neudep_assets.cli import main, run_pipeline
from neudep_assets.cluster import store_differences
from neudep_assets.lib.config import ConfigError, load_config, store_location
from neudep_assets.lib.store import MARKER, ResultStore, StoreError, StoreWarning
from tests.test_store_faults import analysis_tables, counts

TINY = Path(__file__).with_name("tiny.yaml")
FULL = {"dependency_runs": 1, "dependencies": 3, "dependency_metrics": 3, "class_diagnostics": 3}
NONE = dict.fromkeys(FULL, 0)


def memory_store(tmp_path, name: str = "s") -> ResultStore:
    return ResultStore(tmp_path / "data", f"memory://neudep-test-{uuid.uuid4().hex}/{name}")


@pytest.mark.parametrize("crash_at", [2, "marker"])
def test_a_writer_dying_before_the_marker_leaves_no_visible_analysis(tmp_path, monkeypatch, crash_at):
    """The writer dies after some table puts (the 2nd table, or all of them but the marker): its
    objects are there, but no view, `has`, `has_analysis` or `read` sees them; the rerun commits."""
    store = memory_store(tmp_path)
    put, n = store_objects.put_whole, []

    def dying(path, write):
        n.append(path)
        if (crash_at == "marker" and path.name == MARKER) or len(n) == crash_at:
            raise KeyboardInterrupt("killed")
        return put(path, write)

    monkeypatch.setattr(store_objects, "put_whole", dying)
    with pytest.raises(KeyboardInterrupt):
        store.commit_analysis("a1", analysis_tables("a1"), run_id="killed", code_version="v")
    monkeypatch.setattr(store_objects, "put_whole", put)
    assert list(store.analysis_dir("a1").glob("*.parquet"))  # objects were put, but not committed
    assert counts(store) == NONE and not store.check()
    assert not store.has_analysis("a1") and not store.has("dependencies", "a1")
    with pytest.raises(StoreError, match="no dependencies rows"):
        store.read("dependencies", "a1")
    store.commit_analysis("a1", analysis_tables("a1"), run_id="rerun", code_version="v")
    assert counts(store) == FULL and store.has_analysis("a1")
    assert set(store.query("SELECT DISTINCT dagster_run_id FROM dependencies")["dagster_run_id"]) == {"rerun"}


def test_files_the_marker_does_not_list_are_never_read(tmp_path):
    """A crashed attempt's object of a table that the committed analysis does not have stays out."""
    store = memory_store(tmp_path)
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    stray = store.analysis_dir("a1") / "comparisons.parquet"
    buf = io.BytesIO()
    pq.write_table(store_mod.TABLES["comparisons"].empty_table(), buf)
    stray.write_bytes(buf.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert counts(store) == FULL and len(store.query("SELECT * FROM comparisons")) == 0
    assert not store.has("comparisons", "a1")


def test_a_half_written_object_is_not_visible(tmp_path):
    """An object being written by a non-atomic writer (memory:// shows a file open for writing):
    a new single-key file is not listed by any manifest yet (never read), an analysis file whose size
    is not its manifest's makes the analysis not committed."""
    store = memory_store(tmp_path)
    store.write("classes", "d1", [{"dataset_id": "d1", "class_index": 0}], run_id="r", code_version="v")
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    whole = (store.tables_dir / "classes" / "d1.parquet").read_bytes()
    half = store.table_file("classes", "d2")
    fh = half.fs.open(half.path, "wb")  # being written: visible in a listing, half its bytes there
    fh.write(whole[: len(whole) // 2])
    fh.flush()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.query("SELECT dataset_id FROM classes")["dataset_id"].tolist() == ["d1"]
        target = store.analysis_dir("a1") / "dependencies.parquet"
        with target.fs.open(target.path, "wb") as out:  # a rewrite in progress (no longer the marker's size)
            out.write(target.read_bytes()[:-10])
        assert not store.has_analysis("a1")
        with pytest.warns(StoreWarning, match="manifest says"):
            assert counts(store) == NONE
    finally:
        fh.close()


def test_local_store_urls_are_plain_paths(tmp_path):
    """file:// and a plain path give the local layout, with rename and fsync (the default code path)."""
    store = ResultStore(tmp_path / "data", f"file://{tmp_path}/elsewhere")
    assert not store.remote and store.url == tmp_path / "elsewhere" and isinstance(store.url, Path)
    store.commit_analysis("a1", analysis_tables("a1"), run_id="r", code_version="v")
    assert (tmp_path / "elsewhere" / "store" / "analyses" / "a1" / "dependencies.parquet").is_file()
    assert (tmp_path / "data" / "store" / ".locks").is_dir() and counts(store) == FULL
    assert store.ensure_catalog() == tmp_path / "data" / "neudep.duckdb"


@pytest.mark.parametrize("url, why", [("nope://bucket/x", "Unsupported filesystem"),
                                      ("ftp://127.0.0.1:1/x", "Connection refused")])
def test_a_bad_store_url_fails_naming_where_it_came_from(tmp_path, url, why):
    with pytest.raises(StoreError, match=f"NEUDEP_STORE: cannot use store URL '{url}'.*{why}"):
        ResultStore(tmp_path, url, origin="NEUDEP_STORE")


def test_a_store_package_missing_is_named(tmp_path):
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed")
    except ImportError:
        pass
    with pytest.raises(StoreError, match="s3://bucket/x.*s3fs"):
        ResultStore(tmp_path, "s3://bucket/x")


def test_store_location_env_then_config_then_data_root(tmp_path, monkeypatch):
    cfg = tmp_path / "neudep.yaml"
    cfg.write_text(TINY.read_text() + "store: results\n")
    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    assert store_location(tmp_path / "data", cfg) == (str(tmp_path / "results"), f"{cfg}: store")
    assert load_config(cfg).store == str(tmp_path / "results")
    cfg.write_text(TINY.read_text() + "store: memory://bucket/p\n")
    assert store_location(tmp_path / "data", cfg)[0] == "memory://bucket/p"
    monkeypatch.setenv("NEUDEP_STORE", "memory://other")
    assert store_location(tmp_path / "data", cfg) == ("memory://other", "NEUDEP_STORE")
    monkeypatch.delenv("NEUDEP_STORE")
    cfg.write_text(TINY.read_text())
    assert store_location(tmp_path / "data", cfg) == (str(tmp_path / "data"), "the data root (NEUDEP_DATA)")
    cfg.write_text(TINY.read_text() + "store: 3\n")
    with pytest.raises(ConfigError, match="store: must be"):
        load_config(cfg)


def test_a_bad_store_url_stops_the_pipeline_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(TINY.read_text() + "store: nope://bucket/results\n")
    with pytest.raises(StoreError, match=rf"{cfg}: store: cannot use store URL 'nope://bucket/results'"):
        run_pipeline(cfg, tmp_path / "data", instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    assert not (tmp_path / "data" / "datasets").exists() and not (tmp_path / "data" / "checkpoints").exists()


def test_the_tiny_pipeline_on_a_memory_store_gives_the_rows_of_the_local_one(tmp_path, monkeypatch, capsys):
    """One data root (datasets, checkpoints trained first, once), two stores: memory://, then the data
    root. Same rows; `neudep sql` and `neudep summary` read the memory:// store (NEUDEP_STORE) through
    DuckDB's registered fsspec file system. Floats are compared to 1e-3 relative, and `rel_err0` (a
    residual ≈ 0 on a rank-deficient C) not at all: the first pipeline run in a process gives the CNN's
    logits other last bits than later runs (2.2e-5 relative in λ_max), whatever the store: a third
    run on a local store matched the memory:// run to 1e-5 in every column."""
    from neudep_assets.lib.data import prepare_dataset
    from neudep_assets.lib.models.checkpoints import obtain_checkpoint

    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    root, url = tmp_path / "data", f"memory://neudep-test-{uuid.uuid4().hex}/results"
    project = load_config(TINY)
    ds = prepare_dataset(project.dataset, root, log=lambda *_: None)
    for spec in project.models:
        obtain_checkpoint(spec, ds, root, log=lambda *_: None)
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(TINY.read_text() + f"store: {url}\n")
    run_pipeline(cfg, root, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    assert not (root / "store" / "analyses").exists() and not (root / "artifacts").exists()
    run_pipeline(TINY, root, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    local, remote = ResultStore(root), ResultStore(root, url)
    diff = store_differences(remote, local, rtol=1e-3, atol=1e-6)
    assert set(diff) <= {"class_diagnostics.rel_err0 differs"}, diff
    assert counts(remote)["dependency_runs"] > 0
    paths = remote.query("SELECT path FROM logit_sets UNION ALL SELECT path FROM moments")["path"]
    assert len(paths) and all(p.startswith("memory://") and UPath(p).is_file() for p in paths)
    assert list((remote.artifacts_dir / "plots").rglob("*.png"))
    monkeypatch.setenv("NEUDEP_STORE", url)
    monkeypatch.setenv("NEUDEP_DATA", str(root))
    capsys.readouterr()
    main(["sql", "SELECT count(DISTINCT dependency_run_id) AS n FROM dependency_runs"])
    n = int(local.query("SELECT count(DISTINCT dependency_run_id) AS n FROM dependency_runs")["n"][0])
    assert capsys.readouterr().out.split() == ["n", str(n)]
    main(["summary"])
    out = capsys.readouterr().out
    assert "== models (val accuracy) ==" in out and "cnn" in out and "vit" in out
