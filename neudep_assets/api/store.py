"""`open_store`: the result store from Python, read-only: SQL with bound parameters, a model's dependencies,
and the cookbook queries of sql/queries/ as methods returning DataFrames."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from neudep_assets.lib.config import LOGIT_GAUGES
from neudep_assets.lib.store import SQL_DIR, ResultStore

QUERIES = SQL_DIR / "queries"
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")

DEPENDENCIES_SQL = """
SELECT target_class AS target, target_name, source_class AS source, source_name, coef, rel_err, pos_acc,
       orig_pos_acc, lambda_rel, lambda_abs, kind, model, source_model, checkpoint_sha256, logit_gauge, kkt,
       dependency_run_id, dagster_run_id
FROM dependency_lineage
WHERE dependency_run_id IN (SELECT dependency_run_id FROM latest_dependency_runs)
  AND model = $model AND source_model = $source_model AND logit_gauge = $gauge
  AND lambda_mode = 'relative' AND abs(lambda_rel - $lambda_rel) < 1e-9
ORDER BY target, abs(coef) DESC
"""


def cookbook_names() -> list[str]:
    """The cookbook's queries (sql/queries/*.sql), by name."""
    return sorted(p.stem for p in QUERIES.glob("*.sql"))


def query_params(sql: str) -> list[str]:
    """The `$name` parameters a query binds (comments and string literals left out)."""
    body = re.sub(r"--[^\n]*", "", sql)
    body = re.sub(r"'(?:[^']|'')*'", "''", body)
    return sorted(set(_PARAM.findall(body)))


def result_store(store) -> ResultStore:
    """A ResultStore of `store`: a ResultStore, the object of :func:`open_store`, a data root or a URL."""
    if isinstance(store, ResultStore):
        return store
    if isinstance(store, Store):
        return store.store
    return open_store(store).store


class Store:
    """The result store, read-only from Python (see :func:`open_store`).

    Every cookbook query of sql/queries/ is a method of its own name (``store.dependency_share()``,
    ``store.sources_of_class(model="cnn", target="%a", lam=0.1)``) and :meth:`cookbook` by name;
    :meth:`sql` runs any SELECT with ``$name`` parameters bound by DuckDB.
    """

    def __init__(self, store: ResultStore):
        self.store = store

    def __repr__(self) -> str:
        return f"<neudep store {self.store.url}>"

    def sql(self, query: str, **params) -> pd.DataFrame:
        """Run a read-only query on the store's tables and views; ``$name`` placeholders take ``name=...``
        (bound by DuckDB, never pasted into the text).

        Examples
        --------
        >>> import tempfile
        >>> from neudep_assets import open_store
        >>> open_store(tempfile.mkdtemp()).sql("SELECT count(*) AS n FROM dependencies WHERE coef > $c", c=0.1)
           n
        0  0
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be SQL text, got {query!r}")
        return self.store.query(query, params or None)

    def cookbook(self, name: str, **params) -> pd.DataFrame:
        """Run the cookbook query sql/queries/<name>.sql with its ``$name`` parameters."""
        path = QUERIES / f"{name}.sql"
        if not isinstance(name, str) or "/" in name or not path.is_file():
            raise ValueError(f"no cookbook query {name!r}; there are: {', '.join(cookbook_names())}")
        sql = path.read_text()
        wanted = query_params(sql)
        missing, unknown = sorted(set(wanted) - set(params)), sorted(set(params) - set(wanted))
        if missing or unknown:
            raise ValueError(f"cookbook query {name!r} takes the parameters {wanted or 'none'}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
        return self.store.query(sql, params or None)

    def __getattr__(self, name: str):
        if not name.startswith("_") and (QUERIES / f"{name}.sql").is_file():
            def run(**params) -> pd.DataFrame:
                return self.cookbook(name, **params)
            run.__name__ = name
            run.__doc__ = _header(QUERIES / f"{name}.sql")
            return run
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r} (cookbook queries: "
                             f"{', '.join(cookbook_names())})")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(cookbook_names()))

    def dependencies(self, model: str, lambda_rel: float = 0.1, gauge: str = "raw", *,
                     source_model: str | None = None) -> pd.DataFrame:
        """Every dependency edge of `model`'s latest analysis at one relative λ, in one logit gauge (between
        models: `source_model` → `model`), with class names, Rel Err and lineage."""
        if gauge not in LOGIT_GAUGES:
            raise ValueError(f"gauge must be one of {', '.join(LOGIT_GAUGES)}, got {gauge!r}")
        if isinstance(lambda_rel, bool) or not isinstance(lambda_rel, (int, float)) or not 0 < lambda_rel <= 1:
            raise ValueError(f"lambda_rel must lie in (0, 1], got {lambda_rel!r}")
        return self.store.query(DEPENDENCIES_SQL, {"model": model, "source_model": source_model or model,
                                                   "gauge": gauge, "lambda_rel": float(lambda_rel)})

    def models(self) -> pd.DataFrame:
        """The models and their accuracy (sql/queries/models.sql)."""
        return self.cookbook("models")

    def dependency_share(self) -> pd.DataFrame:
        """Per latest analysis and gauge: classes with a dependency at λ_rel = 0.1 (sql/queries/dependency_share.sql)."""
        return self.cookbook("dependency_share")

    def strongest_dependencies(self) -> pd.DataFrame:
        """The strongest within-model dependencies at λ_rel = 0.1 (sql/queries/strongest_dependencies.sql)."""
        return self.cookbook("strongest_dependencies")


def _header(path: Path) -> str:
    """The comment lines that open a query file: its description."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return "\n".join(lines)


def open_store(data_root_or_url: str | os.PathLike | None = None, *, data_root: str | os.PathLike | None = None
               ) -> Store:
    """The result store, to query from Python.

    Parameters
    ----------
    data_root_or_url : str or Path, optional
        A data root (the folder holding ``store/``), or a store URL (``s3://bucket/prefix``, any fsspec
        URL). Default: the project's store (NEUDEP_STORE, else the config's ``store:``, else NEUDEP_DATA).
    data_root : str or Path, optional
        With a URL: the local data root for writer locks (default NEUDEP_DATA).

    Returns
    -------
    Store
        ``.sql(query, **params)``, ``.dependencies(model, lambda_rel, gauge)``, ``.cookbook(name, **params)``
        and one method per cookbook query.

    Examples
    --------
    >>> import tempfile
    >>> from neudep_assets import open_store
    >>> store = open_store(tempfile.mkdtemp())
    >>> len(store.dependencies("cnn"))
    0
    """
    from neudep_assets.lib.config import data_root as default_root, store_location

    if data_root_or_url is None:
        url, origin = store_location(data_root)
        return Store(ResultStore(data_root or default_root(), url, origin=origin))
    if not isinstance(data_root_or_url, (str, os.PathLike)):
        raise TypeError(f"data_root_or_url must be a path or URL, got {type(data_root_or_url).__name__}")
    text = os.fspath(data_root_or_url)
    if "://" in text:
        return Store(ResultStore(data_root or default_root(), text, origin="open_store(data_root_or_url)"))
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"data_root_or_url: {path} is a file, not a data root (a folder)")
    return Store(ResultStore(path, origin="open_store(data_root_or_url)"))
