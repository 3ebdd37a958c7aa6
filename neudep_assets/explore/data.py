"""What the explorer's pages show, read from the result store through its read-only queries.

Every read goes through `ResultStore.query` (the same sandboxed, parameter-bound SQL as `neudep sql`):
the explorer never writes to the store and never pastes a user value into SQL."""

from __future__ import annotations

import difflib
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neudep_assets.lib.store import SQL_DIR, ResultStore

# README's definition of "a class with a dependency": ≤ 10 sources that reconstruct it with Rel Err ≤ 20%
DEP_SOURCES, DEP_REL_ERR = 10, 0.2
GRAPH_EDGE_LIMIT = 2000  # edges per graph page: cytoscape stays responsive; larger graphs are paged


class NotFound(LookupError):
    """A model, class, λ or analysis that the store does not hold; `known` lists what it holds."""

    def __init__(self, what: str, known: list[str]):
        super().__init__(what)
        self.what, self.known = what, known


@dataclass(frozen=True)
class Analysis:
    """One committed analysis (dependency_run_id) and its λ grid."""
    run: str
    kind: str
    model: str
    source_model: str
    gauge: str
    dataset_id: str
    checkpoint: str
    source_checkpoint: str
    lambdas: tuple[float, ...]
    lambda_mode: str

    @property
    def title(self) -> str:
        pair = self.model if self.kind == "within" else f"{self.source_model} → {self.model}"
        return f"{pair} ({self.gauge}, checkpoint {self.checkpoint[:12]})"


class ExploreData:
    """Read-only queries behind the explorer's pages."""

    def __init__(self, store: ResultStore, ttl: float = 10.0):
        self.store, self.ttl = store, ttl
        self._con, self._stamp, self._lock = None, None, threading.Lock()

    def q(self, sql: str, **params) -> pd.DataFrame:
        """One of the explorer's own queries (fixed SQL, values bound by DuckDB) on the store's views."""
        with self._lock:  # one connection (its views use connection-local tables); pages come from worker threads
            return self._connection().execute(sql, params or None).df()

    def _connection(self):
        """The store's sandboxed view connection (`ResultStore.connect`), made again when a commit changed
        what the store holds: building the views lists and checks every committed file, too slow per query."""
        stamp = self._store_stamp()
        if self._con is None or stamp != self._stamp:
            if self._con is not None:
                self._con.close()
            self._con, self._stamp = self.store.connect(), stamp
        return self._con

    def _store_stamp(self):
        """What changes when a commit lands: the modification times of the store's folders (local roots;
        a commit renames a file or folder into one of them), or the clock in `ttl` steps (remote roots)."""
        if self.store.remote:
            return int(time.monotonic() // self.ttl)
        folders = [self.store.tables_dir, self.store.analyses_dir, *self.store.tables_dir.glob("*/")]
        return tuple(sorted((str(f), f.stat().st_mtime_ns) for f in folders if f.is_dir()))

    # -- analyses ---------------------------------------------------------------------------
    def analyses(self, model: str | None = None) -> pd.DataFrame:
        """Every committed analysis (newest first), with a `latest` flag for the current one of each model,
        pair and gauge."""
        return self.q("""
            SELECT dependency_run_id AS run, any_value(kind) AS kind, any_value(model) AS model,
                   any_value(source_model) AS source_model, coalesce(any_value(logit_gauge), 'raw') AS gauge,
                   any_value(dataset_id) AS dataset_id, any_value(checkpoint_sha256) AS checkpoint,
                   any_value(source_checkpoint_sha256) AS source_checkpoint,
                   list(lambda_rel ORDER BY lambda_index) AS lambdas, any_value(lambda_mode) AS lambda_mode,
                   max(written_at) AS written_at,
                   dependency_run_id IN (SELECT dependency_run_id FROM latest_dependency_runs) AS latest
            FROM dependency_runs WHERE ($model = '' OR model = $model OR source_model = $model)
            GROUP BY dependency_run_id ORDER BY written_at DESC, run""", model=model or "")

    def models(self) -> list[str]:
        return sorted(set(self.analyses()["model"]))

    def analysis(self, model: str, *, source: str | None = None, gauge: str = "raw", run: str | None = None) -> Analysis:
        """The analysis a page shows: `run` when given, else the latest of (source → model, gauge)."""
        all_ = self.analyses(model)
        if all_.empty:
            raise NotFound(f"no analysis of a model named {model!r}", self.models())
        if run:
            rows = all_[all_["run"] == run]
            if rows.empty:
                raise NotFound(f"no analysis {run!r} of {model!r}", list(all_["run"]))
        else:
            src = source or model
            rows = all_[(all_["model"] == model) & (all_["source_model"] == src) & (all_["gauge"] == gauge)]
            rows = rows.sort_values(["latest", "written_at"], ascending=False)
            if rows.empty:
                have = all_[all_["model"] == model]
                raise NotFound(f"no {gauge} analysis of {src} → {model}",
                               [f"{s} → {model} ({g})" for s, g in zip(have["source_model"], have["gauge"])])
        r = rows.iloc[0]
        return Analysis(r["run"], r["kind"], r["model"], r["source_model"], r["gauge"], r["dataset_id"],
                        r["checkpoint"], r["source_checkpoint"], tuple(float(x) for x in r["lambdas"]),
                        r["lambda_mode"])

    def lambda_index(self, a: Analysis, lam: float | None) -> int:
        """Index of relative λ `lam` in the analysis's grid (default: 0.1 when there, else the middle)."""
        if lam is None:
            near = [i for i, x in enumerate(a.lambdas) if math.isclose(x, 0.1)]
            return near[0] if near else len(a.lambdas) // 2
        for i, x in enumerate(a.lambdas):
            if math.isclose(x, lam, rel_tol=1e-9):
                return i
        raise NotFound(f"λ_rel = {lam:g} is not in this analysis's grid", [f"{x:g}" for x in a.lambdas])

    # -- classes ----------------------------------------------------------------------------
    def classes(self, dataset_id: str) -> pd.DataFrame:
        return self.q("SELECT class_index, name, label FROM classes WHERE dataset_id = $d ORDER BY class_index",
                      d=dataset_id)

    def find_class(self, a: Analysis, text: str) -> int:
        """A class by index or by (part of) its name; NotFound lists the closest names."""
        classes = self.classes(a.dataset_id)
        if text.strip().isdigit() and int(text) in set(classes["class_index"]):
            return int(text)
        names = classes["name"].fillna("").tolist()
        low = text.strip().lower()
        exact = [i for i, n in enumerate(names) if n.lower() == low]
        part = exact or [i for i, n in enumerate(names) if low and low in n.lower()]
        if len(part) == 1:
            return int(classes["class_index"].iloc[part[0]])
        known = [names[i] for i in part[:20]] or difflib.get_close_matches(text, names, n=10, cutoff=0.3)
        raise NotFound(f"{'several classes match' if part else 'no class matches'} {text!r} "
                       f"({len(classes)} classes in dataset {a.dataset_id}: give an index 0–{len(classes) - 1} "
                       "or part of a name)", known)

    def class_view(self, a: Analysis, target: int, li: int) -> dict:
        """A target at one λ: its sources (names, coefficients), Table-1 metrics (lasso and refit) and
        diagnostics."""
        names = self.classes(a.dataset_id).set_index("class_index")["name"].to_dict()
        if target not in names and names:
            raise NotFound(f"class {target} is not in dataset {a.dataset_id} (0…{max(names)})", [])
        m = self.q("SELECT * FROM dependency_metrics WHERE dependency_run_id = $r AND lambda_index = $li "
                   "AND target_class = $t", r=a.run, li=li, t=target)
        if m.empty:
            raise NotFound(f"class {target} was not analysed in {a.run}", [])
        e = self.q("SELECT source_class, coef FROM dependencies WHERE dependency_run_id = $r AND lambda_index = $li "
                   "AND target_class = $t ORDER BY abs(coef) DESC", r=a.run, li=li, t=target)
        d = self.q("SELECT err0, rel_err0, rank, eq5_violations, eq5_max_violation FROM class_diagnostics "
                   "WHERE dependency_run_id = $r AND target_class = $t", r=a.run, t=target)
        metrics = {k: _num(v) for k, v in m.iloc[0].items() if k not in ("dependency_run_id", "dagster_run_id",
                                                                         "code_version", "written_at")}
        return {"target": target, "target_name": names.get(target, str(target)), "lambda_index": li,
                "lambda_rel": a.lambdas[li],
                "sources": [{"source": int(s), "name": names.get(int(s), str(s)), "coef": float(c)}
                            for s, c in zip(e["source_class"], e["coef"])],
                "metrics": metrics, "diagnostics": {k: _num(v) for k, v in (d.iloc[0].items() if len(d) else [])}}

    def path(self, a: Analysis, target: int) -> pd.DataFrame:
        """The exact path's knots of a target (when the analysis kept it): λ_rel, source, coefficient."""
        return self.q("SELECT k.knot, k.lambda_rel, k.n_sources, p.source_class, p.coef FROM dependency_path_knots k "
                      "LEFT JOIN dependency_path p USING (dependency_run_id, target_class, knot) "
                      "WHERE k.dependency_run_id = $r AND k.target_class = $t ORDER BY k.knot", r=a.run, t=target)

    # -- models -----------------------------------------------------------------------------
    def share_along_lambda(self, a: Analysis) -> pd.DataFrame:
        """Per λ: the share of targets with a dependency, median sources and median Rel Err."""
        return self.q("""
            SELECT lambda_index, count(*) AS targets,
                   count(*) FILTER (WHERE n_sources BETWEEN 1 AND $k AND rel_err <= $e) / count(*) AS share,
                   median(n_sources) AS median_sources, median(rel_err) AS median_rel_err,
                   median(rel_err_refit) AS median_rel_err_refit, avg(orig_acc - acc) AS mean_acc_loss
            FROM dependency_metrics WHERE dependency_run_id = $r GROUP BY lambda_index ORDER BY lambda_index""",
                      r=a.run, k=DEP_SOURCES, e=DEP_REL_ERR)

    def per_target(self, a: Analysis, li: int) -> pd.DataFrame:
        return self.q("SELECT target_class, n_sources, rel_err, pos_acc, orig_pos_acc FROM dependency_metrics "
                      "WHERE dependency_run_id = $r AND lambda_index = $li", r=a.run, li=li)

    def offsets(self, model: str) -> pd.DataFrame:
        return self.q("SELECT split, left(checkpoint_sha256, 12) AS checkpoint, n_samples, offset_share, "
                      "mean_logit_mean, within_sample_std FROM logit_stats WHERE model = $m "
                      "ORDER BY written_at DESC, split", m=model)

    def graph(self, a: Analysis, li: int, *, max_rel_err: float, max_sources: int, offset: int = 0,
              limit: int = GRAPH_EDGE_LIMIT) -> tuple[pd.DataFrame, int]:
        """Edges at one λ of the targets whose dependency passes the filters, strongest first, one page."""
        where = """FROM dependencies d JOIN dependency_metrics m USING (dependency_run_id, lambda_index, target_class)
                   WHERE d.dependency_run_id = $r AND d.lambda_index = $li AND m.rel_err <= $e
                     AND m.n_sources BETWEEN 1 AND $k"""
        p = dict(r=a.run, li=li, e=max_rel_err, k=max_sources)
        total = int(self.q(f"SELECT count(*) AS n {where}", **p)["n"].iloc[0])
        edges = self.q(f"SELECT d.target_class, d.source_class, d.coef, m.rel_err {where} "
                       "ORDER BY abs(d.coef) DESC, d.target_class, d.source_class LIMIT $lim OFFSET $off",
                       **p, lim=limit, off=offset)
        return edges, total

    # -- comparisons ------------------------------------------------------------------------
    def checkpoints(self, model: str) -> pd.DataFrame:
        return self.q("SELECT DISTINCT checkpoint_sha256 AS checkpoint, max(written_at) AS written_at "
                      "FROM dependency_runs WHERE model = $m AND kind = 'within' GROUP BY ALL ORDER BY written_at",
                      m=model)

    def checkpoint_diff(self, model: str, old: str, new: str, lam: float, gauge: str, threshold: float) -> pd.DataFrame:
        """The cookbook's checkpoint_diff.sql: edges gained, lost and moved between two checkpoints."""
        return self.q((SQL_DIR / "queries" / "checkpoint_diff.sql").read_text(), model=model, old=old, new=new,
                      lam=lam, gauge=gauge, threshold=threshold)

    def within_vs_between(self, model: str, other: str, lam: float, gauge: str) -> pd.DataFrame:
        """Per target class of `model`: its within dependency beside the one from `other`'s logits."""
        return self.q("""
            WITH r AS (SELECT dependency_run_id, source_model FROM latest_dependency_runs
                       WHERE model = $m AND source_model IN ($m, $o) AND logit_gauge = $g
                         AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9)
            SELECT s.target_class, any_value(s.target_name) AS target_name,
                   max(s.n_sources) FILTER (WHERE r.source_model = $m) AS within_sources,
                   max(s.rel_err) FILTER (WHERE r.source_model = $m) AS within_rel_err,
                   max(s.n_sources) FILTER (WHERE r.source_model = $o) AS between_sources,
                   max(s.rel_err) FILTER (WHERE r.source_model = $o) AS between_rel_err
            FROM dependency_summary s JOIN r USING (dependency_run_id)
            WHERE abs(s.lambda_rel - $lam) < 1e-9 GROUP BY s.target_class ORDER BY s.target_class""",
                      m=model, o=other, g=gauge, lam=lam)


def _num(v):
    """JSON-safe scalars: NaN/NA become None, numpy numbers plain ones."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    return str(v)
