"""What each materialization put in the result store, so that the store, not Dagster's records, decides
what is missing.

Every asset that writes store rows lists them in its materialization's `store_keys` metadata (tables and
keys, committed analyses, array artifacts); `missing_in_store` asks the store for each of them. A result
deleted, quarantined, damaged or never committed is missing whatever the event log says, and
`defs/jobs.py` plans its rerun (`neudep demo`, the schedules, the `store_watch` sensor)."""

from __future__ import annotations

from typing import Iterable

import dagster as dg

from neudep_assets.lib.store import ResultStore, StoreError

STORE_KEYS = "store_keys"


def present(store: ResultStore, table: str, key: str) -> bool:
    """Rows of `table` for `key` are committed and readable (a zero-length or damaged file is not)."""
    if not store.has(table, key):
        return False
    try:
        return len(store.read(table, key)) > 0
    except (StoreError, OSError, ValueError):
        return False


def record_row(store: ResultStore, table: str, key: str, row: dict, *, run_id: str, code_version: str) -> str:
    """Write `row` (of model `row["model"]`) under `key` unless the store has it; returns the key that
    holds the model's row. Content-addressed results are shared by identical weights, but each model
    name gets its row: a second name (a copied checkpoint folder) is written under `<key>.<model>`,
    so every registered model has its rows in SQL."""
    model = row["model"]
    with store.lock(f"{table}/{key}"):
        if not present(store, table, key):
            store.write(table, key, [row], run_id=run_id, code_version=code_version)
            return key
        if model in set(store.read(table, key)["model"]):
            return key
    alias = f"{key}.{model}"
    if not present(store, table, alias):
        store.write(table, alias, [row], run_id=run_id, code_version=code_version)
    return alias


def store_keys(tables: Iterable[tuple[str, str]] = (), analyses: Iterable[str] = (),
               artifacts: Iterable[tuple[str, str]] = ()) -> dict:
    """The `store_keys` metadata of a materialization: what it needs from the store."""
    return {STORE_KEYS: dg.MetadataValue.json({"tables": [list(t) for t in tables], "analyses": list(analyses),
                                               "artifacts": [list(a) for a in artifacts]})}


def missing_in_store(store: ResultStore, keys: dict | None) -> list[str]:
    """What of `keys` (a `store_keys` value) the store lacks, named (empty: all there, or not known)."""
    if not keys:
        return []
    out = [f"{t}/{k}" for t, k in keys.get("tables", []) if not present(store, t, k)]
    out += [f"analyses/{k}" for k in keys.get("analyses", []) if k and not store.has_analysis(k)]
    out += [f"artifacts/{kind}/{k}" for kind, k in keys.get("artifacts", []) if not store.artifact(kind, k).is_file()]
    return out


def recorded_keys(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dict | None:
    """The `store_keys` of the latest materialization of `asset` (at `partition`), None when it has none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get(STORE_KEYS)
    return value.value if value is not None else None


def pointer_key(kind: str, source_model: str, model: str) -> str:
    """The `current_analyses` key of a model's (within) or a pair's (between) dependency asset."""
    return f"{kind}={source_model}={model}"


def record_current(store: ResultStore, kind: str, source_model: str, model: str, analyses: list[tuple[str, str, str]],
                   *, run_id: str, code_version: str) -> str:
    """Point the model's (or pair's) current analyses at `analyses` ((role, logit gauge, dependency_run_id),
    role `primary` or `crosscheck`): what the SQL views call its analysis is what this materialization
    used, also when it found the analysis in the store, and under this model's name."""
    key = pointer_key(kind, source_model, model)
    rows = [{"kind": kind, "model": model, "source_model": source_model, "role": role, "logit_gauge": gauge,
             "dependency_run_id": run} for role, gauge, run in analyses]
    with store.lock(f"current_analyses/{key}"):
        if present(store, "current_analyses", key):
            old = store.read("current_analyses", key)[list(rows[0])].to_dict("records")
            if sorted(map(sorted, (r.items() for r in old))) == sorted(map(sorted, (r.items() for r in rows))):
                return key  # already current: nothing written (a rerun that finds its analysis changes no file)
        store.write("current_analyses", key, rows, run_id=run_id, code_version=code_version)
    return key
