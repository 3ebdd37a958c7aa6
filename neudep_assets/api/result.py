"""The result of `find_dependencies` / `between_dependencies`: DataFrames with class names, the dependency at
a λ, the sparsest dependency of a class, its star picture, and the commit into a result store."""

from __future__ import annotations

import io
import math
import uuid
from numbers import Integral, Real

import numpy as np
import pandas as pd

from neudep_assets.lib.analysis.dependencies import DependencyAnalysis
from neudep_assets.lib.analysis.store_rows import (DEPENDENCIES_CODE_VERSION, commit_rows, run_rows,
                                                   uncertified)
from neudep_assets.lib.config import DependencyConfig, stable_hash

_EDGE_COLUMNS = ["lambda_rel", "lambda_abs", "target", "target_name", "source", "source_name", "coef"]


class Dependencies:
    """Dependencies of every target class along a λ grid (one analysis, certified).

    Attributes
    ----------
    edges : DataFrame
        One row per nonzero coefficient: lambda_rel, lambda_abs, target, target_name, source,
        source_name, coef.
    metrics : DataFrame
        One row per target × λ: the paper's Table-1 metrics of the lasso (n_sources, abs_err, rel_err,
        acc, orig_acc, pos_acc, orig_pos_acc, n_pos) and of its least-squares refit on the same sources
        (``*_refit``), the fit-split error (fit_err, unexplained_share = err/E[y²]), the certificate (kkt),
        the screening counts and `evaluated_on` ("eval", or "fit": in-sample, no eval logits given).
    diagnostics : DataFrame
        One row per class: redundancy err0 and rel_err0 (§2.2, the residual with every other class),
        rank of C, Eq. 5 violations, and the Theorem 3 / Conjecture 1 counts summed over the λ grid.
    kind : {"within", "between"}
    analysis : DependencyAnalysis
        The lib's analysis, as the pipeline commits it.
    """

    def __init__(self, analysis: DependencyAnalysis, config: DependencyConfig, class_names: list[str], *, kind: str,
                 run_key: str, moments_id: str):
        self.analysis, self.config, self.class_names, self.kind = analysis, config, class_names, kind
        self.run_key, self.moments_id = run_key, moments_id
        pt = analysis.per_target
        lam = np.asarray(config.lambdas)[pt["lambda_index"].to_numpy()]
        rel = lam if config.lambda_mode == "relative" else np.divide(
            pt["lambda_abs"], pt["lambda_max"], out=np.full(len(pt), np.nan), where=pt["lambda_max"].to_numpy() > 0)
        names = np.asarray(class_names, dtype=object)
        m = pt.rename(columns={"target_class": "target"})
        m.insert(1, "lambda_rel", rel)
        m.insert(3, "target_name", names[m["target"].to_numpy()])
        m["evaluated_on"] = "eval" if config.eval_split != config.fit_split else "fit"
        self.metrics = m
        e = analysis.edges.merge(pt[["lambda_index", "target_class", "lambda_abs"]].assign(lambda_rel=rel),
                                 on=["lambda_index", "target_class"])
        e = e.rename(columns={"target_class": "target", "source_class": "source"})
        e["target_name"], e["source_name"] = names[e["target"].to_numpy()], names[e["source"].to_numpy()]
        self._edges = e
        self.edges = e[_EDGE_COLUMNS].reset_index(drop=True)
        counts = (pt.groupby("target_class")[["thm3_screened", "thm3_violations", "conj1_screened",
                                             "conj1_violations"]].sum().reset_index())
        d = analysis.per_class.merge(counts, on="target_class").rename(columns={"target_class": "target"})
        d.insert(1, "target_name", names[d["target"].to_numpy()])
        self.diagnostics = d

    @property
    def lambdas(self) -> tuple[float, ...]:
        """The λ grid as given (relative or absolute, see ``config.lambda_mode``)."""
        return self.config.lambdas

    def __repr__(self) -> str:
        ev = "eval split" if self.metrics["evaluated_on"].iloc[0] == "eval" else "fit split (in-sample)"
        return (f"<Dependencies {self.kind}: {len(self.class_names)} classes × {len(self.lambdas)} λ "
                f"({self.config.lambda_mode}) in the {self.config.logit_gauge} gauge, {len(self.edges)} edges, "
                f"metrics on the {ev}, worst relative KKT {self.metrics['kkt'].max():.1e}>")

    # -- reading ---------------------------------------------------------------------------------
    def _target(self, target) -> int:
        if isinstance(target, str):
            if target not in self.class_names:
                raise ValueError(f"target: no class named {target!r}")
            return self.class_names.index(target)
        if isinstance(target, bool) or not isinstance(target, Integral) or not 0 <= target < len(self.class_names):
            raise ValueError(f"target must be a class name or an index in [0, {len(self.class_names)}), got {target!r}")
        return int(target)

    def _lambda_index(self, lam, name: str = "lambda_rel") -> int | None:
        """The grid index of λ (as given: relative or absolute per lambda_mode), None when off the grid."""
        if isinstance(lam, bool) or not isinstance(lam, Real) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"{name} must be a finite number ≥ 0, got {lam!r}")
        hit = np.flatnonzero(np.isclose(self.lambdas, lam, rtol=1e-9, atol=1e-12))
        return int(hit[0]) if hit.size else None

    def _path(self) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        t = self.analysis.path_tables
        return (t["dependency_path_knots"], t["dependency_path"]) if t else None

    def _named(self, df: pd.DataFrame, **const) -> pd.DataFrame:
        names = np.asarray(self.class_names + [None], dtype=object)
        df = df.rename(columns={"target_class": "target", "source_class": "source"}).assign(**const)
        df["target_name"] = names[df["target"].to_numpy()]
        src = df["source"].to_numpy(dtype=float)
        df["source_name"] = names[np.where(np.isnan(src), -1, np.nan_to_num(src, nan=-1)).astype(int)]
        return df

    def at(self, lambda_rel: float) -> pd.DataFrame:
        """The dependencies at one λ: `edges` rows of a grid λ, or (``exact_path=True``) of any λ from the
        exact path (coefficients interpolated exactly between its knots).

        Examples
        --------
        >>> import numpy as np
        >>> from neudep_assets import find_dependencies
        >>> f = np.random.default_rng(1).normal(size=(500, 4))
        >>> f[:, 3] = f[:, 0] + f[:, 1]
        >>> find_dependencies(f, lambdas=[0.1], exact_path=True).at(0.3).query("target == 3")["source"].tolist()
        [0, 1]
        """
        li = self._lambda_index(lambda_rel)
        if li is not None:
            return self._edges[self._edges["lambda_index"] == li][_EDGE_COLUMNS].reset_index(drop=True)
        path = self._path()
        if path is None:
            raise ValueError(f"lambda_rel = {lambda_rel!r} is not on the λ grid {list(self.lambdas)}; pass one of "
                             "those, or solve with exact_path=True for any λ")
        from neudep_assets.lib.covlasso.path import dependency_at

        df = dependency_at(*path, float(lambda_rel), relative=self.config.lambda_mode == "relative")
        return self._named(df)[_EDGE_COLUMNS].reset_index(drop=True)

    def sparsest(self, target, *, at_most: float | None = None, bound: str = "unexplained_share",
                 max_sources: int | None = None) -> pd.DataFrame:
        """The sparsest dependency of one class: the fewest sources whose `bound` is ≤ `at_most` (ties: the
        largest λ), or, with `max_sources`, the last dependency along λ with at most that many sources.

        `bound` is "unexplained_share" (err/E[y²] on the fit split: exact anywhere on the path when the
        analysis kept it, ``exact_path=True``; else on the λ grid) or "rel_err" (Table 1's Rel Err on the
        eval split, known on the λ grid only). Rows: one per source (a dependency without a source: one
        row, source NaN), with the `bound` used and whether the answer is exact on the path.
        """
        from neudep_assets.lib.covlasso.path import last_with_at_most, sparsest_on_grid, sparsest_within

        t = self._target(target)
        if (max_sources is None) == (at_most is None):
            raise ValueError("sparsest: give exactly one of at_most (in (0, 1]) or max_sources (an integer ≥ 0)")
        if bound not in ("unexplained_share", "rel_err"):
            raise ValueError(f"bound must be 'unexplained_share' or 'rel_err', got {bound!r}")
        if max_sources is not None and (isinstance(max_sources, bool) or not isinstance(max_sources, Integral)
                                        or max_sources < 0):
            raise ValueError(f"max_sources must be an integer ≥ 0, got {max_sources!r}")
        if at_most is not None and (isinstance(at_most, bool) or not isinstance(at_most, Real) or not 0 < at_most <= 1):
            raise ValueError(f"at_most (the largest {bound}) must lie in (0, 1], got {at_most!r}")
        cols = ["target", "target_name", "bound", "lambda_rel", "lambda_abs", "unexplained_share", "rel_err",
                "n_sources", "source", "source_name", "coef", "exact"]
        path = self._path()
        if path is not None and (max_sources is not None or bound == "unexplained_share"):
            knots, coefs = (p[p["target_class"] == t] for p in path)
            df = last_with_at_most(knots, coefs, int(max_sources)) if at_most is None else \
                sparsest_within(knots, coefs, float(at_most))
            if not df.empty:
                df["n_sources"] = int(df["source_class"].notna().sum())
            return self._named(df, exact=True).reindex(columns=cols)
        m = self.metrics[self.metrics["target"] == t].rename(columns={"target": "target_class"})
        e = self._edges[self._edges["target"] == t].rename(columns={"target": "target_class", "source": "source_class"})
        if at_most is None:  # on the grid: the smallest λ that keeps to max_sources
            ok = m[m["n_sources"] <= max_sources].sort_values("lambda_abs").head(1)
            df = ok.merge(e[["lambda_index", "target_class", "source_class", "coef"]], how="left",
                          on=["lambda_index", "target_class"])
        else:
            df = sparsest_on_grid(m, e, float(at_most), bound=bound)
        if df.empty:
            return pd.DataFrame(columns=cols)
        lam = m.set_index("lambda_index")["lambda_rel"]
        df = df.assign(lambda_rel=df["lambda_index"].map(lam), bound=None if at_most is None else bound)
        return self._named(df, exact=False).reindex(columns=cols).reset_index(drop=True)

    def star(self, target, lambda_rel: float | None = None):
        """The star picture of one class (the paper's Fig. 2): its sources at one λ of the grid (default:
        the one closest to 0.1), each spoke with its coefficient. A matplotlib Figure (no pyplot state)."""
        from matplotlib.figure import Figure
        from matplotlib.image import imread

        from neudep_assets.lib.report.plots import star_plot

        t = self._target(target)
        li = (int(np.argmin(np.abs(np.asarray(self.lambdas) - 0.1))) if lambda_rel is None
              else self._lambda_index(lambda_rel))
        if li is None:
            raise ValueError(f"lambda_rel = {lambda_rel!r} is not on the λ grid {list(self.lambdas)}")
        e = self._edges[(self._edges["lambda_index"] == li) & (self._edges["target"] == t)]
        m = self.metrics[(self.metrics["lambda_index"] == li) & (self.metrics["target"] == t)].iloc[0]
        name = self.class_names[t]
        png = star_plot(name, list(zip(e["source_name"], e["coef"].astype(float))),
                        title=f"{name} ({self.kind}), λ={self.lambdas[li]:g} {self.config.lambda_mode}: "
                              f"Rel Err {100 * m['rel_err']:.1f}%")
        img = imread(io.BytesIO(png), format="png")
        fig = Figure(figsize=(img.shape[1] / 100, img.shape[0] / 100), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(img)
        ax.axis("off")
        return fig

    # -- committing ------------------------------------------------------------------------------
    def save(self, store, *, model: str, source_model: str | None = None, dataset_id: str | None = None,
             checkpoint_sha256: str | None = None, source_checkpoint_sha256: str | None = None,
             run_id: str | None = None) -> str:
        """Commit this analysis into a result store as the dependency assets do: certified first (every
        solution's relative KKT ≤ tol, else nothing is written), all its tables in one commit, one
        `dependency_runs` row per λ with the lineage columns; the class names go to `classes` under
        `dataset_id` (default: a hash of the names). Saving again finds it. Returns its dependency_run_id.

        Parameters
        ----------
        store : str, Path, the object of :func:`open_store`, or a ResultStore
            A data root or store URL.
        model : str
            The (target) model's name in the store.
        source_model : str
            Between models: the source model's name (required); within: None (= model).
        dataset_id, checkpoint_sha256, source_checkpoint_sha256 : str, optional
            Lineage: the pipeline's ids when the logits are of its datasets and checkpoints.
        run_id : str, optional
            Recorded as the rows' dagster_run_id (default "api-" and a random id).
        """
        from neudep_assets.api.store import result_store

        for arg, v in (("model", model), ("source_model", source_model), ("dataset_id", dataset_id),
                       ("run_id", run_id)):
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ValueError(f"{arg} must be a non-empty string, got {v!r}")
        if self.kind == "between" and source_model is None:
            raise ValueError("source_model: a between-model analysis needs the source model's name")
        if self.kind == "within" and source_model not in (None, model):
            raise ValueError(f"source_model must be None (= model) for a within-model analysis, got {source_model!r}")
        rs = result_store(store)
        n_bad, worst = uncertified(self.analysis.per_target, self.config.tol, self.lambdas, self.class_names)
        if n_bad:
            raise ValueError(f"{n_bad} of {len(self.metrics)} CovLasso solutions exceed tol = {self.config.tol:g} "
                             f"(relative KKT), so nothing was written; worst: {'; '.join(worst)}")
        dataset_id = dataset_id or "api-" + stable_hash(self.class_names)
        source_model = source_model or model
        source_sha = source_checkpoint_sha256 if self.kind == "between" else checkpoint_sha256
        lineage = {"model": model, "source_model": source_model, "dataset_id": dataset_id,
                   "checkpoint_sha256": checkpoint_sha256, "source_checkpoint_sha256": source_sha}
        key = f"{self.kind}-" + stable_hash({"analysis": self.run_key, "lineage": lineage})
        run_id = run_id or f"api-{uuid.uuid4().hex[:12]}"
        self._check_classes(rs, dataset_id, run_id)
        rows = run_rows(key, self.kind, self.config, self.analysis, model=model, sha=checkpoint_sha256,
                        source_model=source_model, source_sha=source_sha, dataset_id=dataset_id,
                        moments_id=self.moments_id)
        with rs.lock(f"analyses/{key}"):
            if not rs.has_analysis(key):
                commit_rows(rs, key, self.analysis, rows, run_id=run_id, code_version=DEPENDENCIES_CODE_VERSION)
        return key

    def _check_classes(self, rs, dataset_id: str, run_id: str) -> None:
        """The store's class names of `dataset_id` are these (written when it has none)."""
        if rs.has("classes", dataset_id):
            have = rs.read("classes", dataset_id).sort_values("class_index")["name"].tolist()
            if have != self.class_names:
                raise ValueError(f"dataset_id {dataset_id!r} has {len(have)} other class names in the store "
                                 f"(first: {have[:3]}); pass its class_names, or another dataset_id")
            return
        rs.write("classes", dataset_id, [{"dataset_id": dataset_id, "class_index": i, "name": n, "label": n}
                                         for i, n in enumerate(self.class_names)],
                 run_id=run_id, code_version=DEPENDENCIES_CODE_VERSION)
        if not rs.has("datasets", dataset_id):
            rs.write("datasets", dataset_id, [{"dataset_id": dataset_id, "kind": "api",
                                               "n_classes": len(self.class_names)}],
                     run_id=run_id, code_version=DEPENDENCIES_CODE_VERSION)
