"""The result store: atomic keyed Parquet files, views in DuckDB, parameterised queries."""

import uuid

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from neudep_assets.lib.store import StoreError, load_arrays, save_arrays


def _row(i: int) -> dict:
    return {"dataset_id": "d1", "class_index": i, "name": f"class {i}", "label": chr(65 + i)}


def test_rewriting_a_key_never_duplicates_rows(new_store):
    store = new_store()
    store.write("classes", "d1", [_row(0), _row(1)], run_id="r1", code_version="1")
    store.write("classes", "d1", [_row(0), _row(1)], run_id="r2", code_version="1")
    store.write("classes", "d2", [{**_row(5), "dataset_id": "d2"}], run_id="r3", code_version="1")
    df = store.query("SELECT dataset_id, count(*) AS n, any_value(dagster_run_id) AS run FROM classes GROUP BY ALL ORDER BY 1")
    assert df.to_dict("records") == [{"dataset_id": "d1", "n": 2, "run": "r2"}, {"dataset_id": "d2", "n": 1, "run": "r3"}]


def test_views_exist_and_are_empty_before_any_result(new_store):
    store = new_store()
    for view in ("checkpoints", "dependency_lineage", "dependency_summary", "comparisons"):
        assert len(store.query(f"SELECT * FROM {view}")) == 0
    cols = set(store.query("SELECT * FROM dependency_lineage LIMIT 0").columns)
    assert {"model", "checkpoint_sha256", "dataset", "fit_split", "eval_split", "lambda_rel", "lambda_abs",
            "target_class", "target_name", "source_model", "source_class", "source_name", "coef",
            "dagster_run_id"} <= cols


def test_query_binds_parameters_instead_of_pasting(new_store):
    store = new_store()
    store.write("classes", "d1", [_row(0), _row(1)], run_id="r", code_version="1")
    evil = "x' OR '1'='1"
    assert len(store.query("SELECT * FROM classes WHERE name = $name", {"name": evil})) == 0
    assert len(store.query("SELECT * FROM classes WHERE name = $name", {"name": "class 1"})) == 1


def test_catalog_is_read_only_for_queries(new_store):
    store = new_store()
    for sql in ("CREATE TABLE t AS SELECT 1", "SELECT 1; COPY (SELECT 1) TO 'x.csv'", "DROP VIEW classes"):
        with pytest.raises(StoreError, match="read-only|one SQL statement per call"):
            store.query(sql)
    assert not any(p.name == "x.csv" for p in store.url.rglob("*"))


def test_unknown_columns_and_bad_keys_are_refused(new_store):
    store = new_store()
    with pytest.raises(StoreError, match="unexpected columns"):
        store.write("classes", "d1", [{**_row(0), "oops": 1}], run_id="r", code_version="1")
    with pytest.raises(StoreError, match="bad store key"):
        store.write("classes", "../x", [_row(0)], run_id="r", code_version="1")
    assert not store.has("classes", "d1")
    assert not list(store.url.rglob("*.parquet"))


@pytest.mark.parametrize("where", ["local", "memory"])
def test_arrays_round_trip_and_corrupt_file_is_named(tmp_path, where):
    base = tmp_path if where == "local" else UPath(f"memory://neudep-test-{uuid.uuid4().hex}")
    path = save_arrays(base / "a" / "x.npz", logits=np.arange(6.0).reshape(2, 3), ids=np.array(["a", "b"]))
    back = load_arrays(str(path))  # as stored in a table: a path or URL string
    assert np.array_equal(back["logits"], np.arange(6.0).reshape(2, 3)) and list(back["ids"]) == ["a", "b"]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(StoreError, match="x.npz"):
        load_arrays(path)
    with pytest.raises(TypeError):
        save_arrays(base / "o.npz", bad=np.array([{"a": 1}], dtype=object))
    assert not (base / "o.npz").exists()
    with pytest.raises(StoreError, match="artifact missing"):
        load_arrays(str(base / "none.npz"))


def test_failed_write_leaves_no_file(new_store):
    store = new_store()
    with pytest.raises(Exception):
        store.write("classes", "d1", pd.DataFrame({"dataset_id": ["d"], "class_index": ["not an int"]}),
                    run_id="r", code_version="1")
    assert not store.has("classes", "d1")
    assert not [p for p in (store.tables_dir / "classes").glob("*") if p.name != "_empty.parquet"]
