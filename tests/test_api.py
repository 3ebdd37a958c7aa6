"""The public Python API (neudep_assets.api): the same rows as the dependency assets on the same logits,
right against independent references (cvxpy, brute-force Table-1 metrics) on a planted dependency, every
bad input refused naming its argument before any work, and `save` committing what the lineage views read."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import neudep_assets.api.dependencies as api_deps
from neudep_assets import between_dependencies, find_dependencies, model_logits, open_store
from neudep_assets.lib.analysis.moments import second_moment
from neudep_assets.lib.config import DependencyConfig
from neudep_assets.lib.store import ResultStore, save_arrays

PROVENANCE = ["dependency_run_id", "dagster_run_id", "code_version", "written_at"]
LAMBDAS = (0.5, 0.1, 0.02)
N_CLASSES = 8
NAMES = [f"c{i}" for i in range(N_CLASSES)]


def planted(n_samples=1500, seed=0):
    """Logits of 8 classes whose class 7 is 0.6·class 1 − 0.4·class 4 (plus 2% noise), float32, and labels."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n_samples, N_CLASSES)) @ (np.eye(N_CLASSES) + 0.2 * rng.normal(size=(N_CLASSES, N_CLASSES)))
    f[:, 7] = 0.6 * f[:, 1] - 0.4 * f[:, 4] + 0.02 * rng.normal(size=n_samples)
    labels = np.where(rng.random(n_samples) < 0.8, f.argmax(1), rng.integers(0, N_CLASSES, n_samples))
    return f.astype(np.float32), labels.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    F, _ = planted(1500, 0)
    E, lab = planted(600, 1)
    return F, E, lab


def _rows(store: ResultStore, table: str, key: str, drop=()) -> pd.DataFrame:
    df = store.read(table, key).drop(columns=[*PROVENANCE, *drop])
    return df.sort_values(list(df.columns[:3])).reset_index(drop=True)


# -- one implementation: the asset's rows -------------------------------------------------------------

ASSET_CONFIG = """dataset:
  kind: glyphs
  glyphs: {n_classes: 8, n_ood_classes: 2, image_size: 32, train_per_class: 6, val_per_class: 4, ood_per_class: 2, seed: 0}
models:
  - {name: f, arch: resnet10t}
device: cpu
dependencies:
  lambdas: [0.5, 0.1, 0.02]
  gauge_crosscheck: false
"""
SHA_F, SHA_G = "ab" * 32, "cd" * 32
CTX = SimpleNamespace(log=SimpleNamespace(info=lambda *_: None), run=SimpleNamespace(run_id="dagster-run"))


def _target_model(F, E):
    """A second model's logits of the same fit and eval samples."""
    rng = np.random.default_rng(5)
    mix = 0.3 * rng.normal(size=(N_CLASSES, N_CLASSES))
    G = (F @ mix + rng.normal(size=F.shape)).astype(np.float32)
    Ge = (E @ mix + rng.normal(size=E.shape)).astype(np.float32)
    return G, Ge


def _asset_within(root, F, E, lab, gauge):
    """The dependencies asset's own `_within` (solve, certify, commit) on logits as the moments and logits
    assets store them. Returns the store and the analysis's key."""
    from neudep_assets.defs.dependency_assets import _within

    store = ResultStore(root)
    save_arrays(store.artifact("moments", "m1"), C=second_moment(F))
    save_arrays(store.artifact("logits", "e1"), logits=E, labels=lab)
    eff = DependencyConfig(lambdas=LAMBDAS, logit_gauge=gauge, gauge_crosscheck=False)
    key, check = _within(CTX, store, eff, SimpleNamespace(class_names=NAMES, dataset_id="d"),
                         {"model": "m", "checkpoint_sha256": SHA_F},
                         {"moments_id": "m1", "path": str(store.artifact("moments", "m1"))},
                         {"logit_set_id": "e1", "path": str(store.artifact("logits", "e1"))},
                         pictures=False, device=None)
    assert check.passed
    return store, key


def _asset_between(root, F, G, E, Ge, lab, gauge):
    """The between_dependencies asset's own steps on logits as the logits assets store them: the pair's
    moments (`_between_problem`), two chunk steps (the `dependency_chunk` op, 2 targets at a time) and the
    commit step (`_merge_and_commit`). Returns the store and the analysis's key."""
    import dagster as dg

    from neudep_assets.defs import dependency_assets as da
    from neudep_assets.defs.resources import Neudep

    root.mkdir(parents=True)
    (root / "neudep.yaml").write_text(ASSET_CONFIG)
    neudep = Neudep(config_path=str(root / "neudep.yaml"), data_root=str(root))
    store = neudep.store()
    sides = {}
    for name, lg in {"fit_f": F, "fit_g": G, "eval_f": E, "eval_g": Ge}.items():
        save_arrays(store.artifact("logits", name), logits=lg, sample_ids=np.arange(len(lg)).astype(str),
                    labels=lab if name.startswith("eval") else np.full(len(lg), -1))
        sides[name] = {"path": str(store.artifact("logits", name))}
    override = da.DependenciesConfig(logit_gauge=gauge, target_chunk=2)
    eff = da._plan_eff(neudep, {"override": override.model_dump()})
    plan = {"kind": "between", "override": override.model_dump(), "run_key": "between-k", "source": "f",
            "target": "g", "model_sha": SHA_G, "source_sha": SHA_F, "moments_id": "f-x-g", "eval_f": sides["eval_f"],
            "eval_g": sides["eval_g"]}
    plan["problem_path"] = str(da._between_problem(store, "between-k", eff, "f", "g", *sides.values()))
    context = dg.build_op_context(resources={"neudep": neudep})
    chunks = [da.dependency_chunk(context, plan=plan, chunk={"targets": t}) for t in ([0, 5], [5, N_CLASSES])]
    check = da._merge_and_commit(CTX, store, plan, eff, SimpleNamespace(class_names=NAMES, dataset_id="d"), chunks,
                                 "f→g")
    assert check.passed
    return store, "between-k"


def _assert_same_rows(api_store, api_key, asset_store, asset_key):
    """Table for table, the same rows to the bit (lineage columns included; not the run key, its moments id
    nor the provenance)."""
    for table in ("dependencies", "dependency_metrics", "class_diagnostics"):
        pd.testing.assert_frame_equal(_rows(api_store, table, api_key), _rows(asset_store, table, asset_key),
                                      check_exact=True)
    pd.testing.assert_frame_equal(_rows(api_store, "dependency_runs", api_key, drop=["moments_id"]),
                                  _rows(asset_store, "dependency_runs", asset_key, drop=["moments_id"]),
                                  check_exact=True)
    assert api_store.read("dependency_runs", api_key)["code_version"].iloc[0] == \
        asset_store.read("dependency_runs", asset_key)["code_version"].iloc[0]


@pytest.mark.parametrize("gauge", ["raw", "centered"])
def test_within_rows_equal_the_dependency_asset(data, tmp_path, gauge):
    """The asset's own `_within` (solve, certify, commit) and find_dependencies(...).save on the same logits
    commit the same rows, table for table, lineage columns included."""
    F, E, lab = data
    asset_store, key = _asset_within(tmp_path / "asset", F, E, lab, gauge)
    res = find_dependencies(F, eval_logits=E, eval_labels=lab, lambdas=LAMBDAS, gauge=gauge, class_names=NAMES,
                            device="cpu")
    api_root = tmp_path / "api"
    api_key = res.save(api_root, model="m", dataset_id="d", checkpoint_sha256=SHA_F)
    api_store = ResultStore(api_root)
    _assert_same_rows(api_store, api_key, asset_store, key)
    # the lineage view joins the committed rows with the class names the API wrote
    lineage = open_store(api_root).sql("SELECT * FROM dependency_lineage WHERE dependency_run_id = $k", k=api_key)
    assert len(lineage) == len(res.edges) and set(lineage["target_name"]) <= set(NAMES)
    assert (lineage["logit_gauge"] == gauge).all() and (lineage["checkpoint_sha256"] == SHA_F).all()


@pytest.mark.parametrize("gauge", ["raw", "centered"])
def test_between_rows_equal_the_assets_chunk_steps(data, tmp_path, gauge):
    """between_dependencies (unsplit, solved 2 targets at a time) and the between asset's own steps (moments,
    two chunk steps, merge and commit) on the same logits commit the same rows, table for table."""
    F, E, lab = data
    G, Ge = _target_model(F, E)
    asset_store, key = _asset_between(tmp_path / "asset", F, G, E, Ge, lab, gauge)
    res = between_dependencies(F, G, source_eval=E, target_eval=Ge, eval_labels=lab, lambdas=LAMBDAS, gauge=gauge,
                               class_names=NAMES, target_chunk=2, device="cpu")
    api_key = res.save(tmp_path / "api", model="g", source_model="f", dataset_id="d", checkpoint_sha256=SHA_G,
                       source_checkpoint_sha256=SHA_F)
    api_store = ResultStore(tmp_path / "api")
    _assert_same_rows(api_store, api_key, asset_store, key)
    runs = api_store.read("dependency_runs", api_key)
    assert set(runs["kind"]) == {"between"} and set(runs["source_model"]) == {"f"} and set(runs["model"]) == {"g"}


def test_the_api_and_the_assets_run_one_implementation(data, tmp_path, monkeypatch):
    """The API, the asset's unsplit `_within` and its chunk steps all reach the solver through
    lib/analysis/problem.py, with the same arrays and settings: a path that composed `analyse` (the gauge,
    the moments, the offset share) itself again would not call these, and this test would fail."""
    from neudep_assets.lib.analysis import problem

    calls = []

    def spy(name):
        real = getattr(problem, name)

        def wrapped(*args, **kwargs):
            calls.append((name, args, kwargs))
            return real(*args, **kwargs)
        monkeypatch.setattr(problem, name, wrapped)
    for name in ("analyse", "analyse_chunk", "merge_chunks", "offset_direction_share_of"):
        spy(name)

    def seen():
        out = [(name, args, kwargs) for name, args, kwargs in calls]
        calls.clear()
        return out

    def same(a, b):
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] is None and b[k] is None) or np.array_equal(a[k], b[k]), k

    F, E, lab = data
    for gauge in ("raw", "centered"):
        find_dependencies(F, eval_logits=E, eval_labels=lab, lambdas=LAMBDAS, gauge=gauge, device="cpu")
        api = seen()
        _asset_within(tmp_path / f"within-{gauge}", F, E, lab, gauge)
        asset = seen()
        assert [c[0] for c in api] == [c[0] for c in asset] == ["analyse", "offset_direction_share_of"]
        same(api[0][2], asset[0][2])
        assert api[0][2]["gauge"] == gauge and np.array_equal(api[0][1][0], asset[0][1][0])  # C in the gauge

    G, Ge = _target_model(F, E)
    between_dependencies(F, G, source_eval=E, target_eval=Ge, eval_labels=lab, lambdas=LAMBDAS, gauge="centered",
                         device="cpu")
    (_, (C, _), kw), _ = seen()
    _asset_between(tmp_path / "between", F, G, E, Ge, lab, "centered")
    asset = seen()
    assert [c[0] for c in asset] == ["analyse_chunk"] * 5 + ["merge_chunks", "offset_direction_share_of"]
    for _, (C_step, _, targets), kw_step in asset[:5]:
        assert np.array_equal(C_step, C) and len(targets) <= 2
        same({k: v for k, v in kw.items() if k not in ("target_chunk", "log")}, kw_step)


def test_an_analysis_whose_arrays_are_in_another_gauge_than_its_config_is_refused(data):
    """The gauge is chosen once: arrays taken into one gauge are never solved as the other's."""
    from neudep_assets.lib.analysis.problem import merge_solved, solve, solve_chunk, within_problem

    F, E, lab = data
    raw = within_problem(second_moment(F), E, lab, "raw")
    centered = DependencyConfig(lambdas=LAMBDAS, logit_gauge="centered")
    for run in (lambda: solve(raw, centered), lambda: solve_chunk(raw, centered, [0, 1]),
                lambda: merge_solved(raw, centered, [])):
        with pytest.raises(ValueError, match="in the raw gauge but its config asks for logit_gauge 'centered'"):
            run()
    with pytest.raises(ValueError, match="logit_gauge must be one of raw, centered, got 'mean'"):
        within_problem(second_moment(F), E, lab, "mean")


# -- right, against independent references ----------------------------------------------------------

def test_planted_dependency_against_cvxpy_and_brute_force_table1(data):
    import cvxpy as cp

    F, E, lab = data
    res = find_dependencies(F, eval_logits=E, eval_labels=lab, lambdas=[0.2, 0.02], class_names=NAMES, device="cpu")
    at = res.at(0.02)
    assert sorted(at[at["target"] == 7]["source"]) == [1, 4]  # the planted sources, and only them
    C = F.astype(np.float64).T @ F.astype(np.float64) / len(F)
    for li, lam in enumerate([0.2, 0.02]):
        for t in (0, 7):
            row = res.metrics[(res.metrics["target"] == t) & (res.metrics["lambda_index"] == li)].iloc[0]
            assert row["lambda_rel"] == lam and np.isclose(row["lambda_abs"], lam * row["lambda_max"])
            keep = np.arange(N_CLASSES) != t
            x = cp.Variable(N_CLASSES - 1)
            cp.Problem(cp.Minimize(cp.quad_form(x, cp.psd_wrap(C[np.ix_(keep, keep)])) - 2 * C[keep, t] @ x
                                   + row["lambda_abs"] * cp.norm1(x))).solve(solver=cp.CLARABEL)
            mine = np.zeros(N_CLASSES)
            e = res.at(lam)
            e = e[e["target"] == t]
            mine[e["source"].to_numpy()] = e["coef"].to_numpy()
            assert np.abs(mine[keep] - x.value).max() < 1e-5
            # Table 1 on the eval split, by brute force
            rec = E.astype(np.float64) @ mine
            y = E[:, t].astype(np.float64)
            assert np.isclose(row["rel_err"], np.abs(y - rec).mean() / np.abs(y).mean(), rtol=1e-9)
            Z = E.astype(np.float64).copy()
            Z[:, t] = rec
            assert np.isclose(row["acc"], (Z.argmax(1) == lab).mean())
            assert np.isclose(row["pos_acc"], (Z.argmax(1) == lab)[lab == t].mean())
    assert (res.metrics["evaluated_on"] == "eval").all()
    red = res.diagnostics.set_index("target")
    F64 = F.astype(np.float64)
    resid = F64[:, 7] - F64[:, :7] @ np.linalg.lstsq(F64[:, :7], F64[:, 7], rcond=None)[0]
    assert np.isclose(red.loc[7, "err0"], (resid ** 2).mean(), rtol=1e-6)


def test_in_sample_metrics_without_eval_and_exact_path_readers(data):
    F, _, _ = data
    res = find_dependencies(F, lambdas=[0.5, 0.02], exact_path=True, device="cpu")
    assert (res.metrics["evaluated_on"] == "fit").all() and res.metrics["acc"].isna().all()
    assert res.metrics["rel_err"].notna().all()
    for lam in (0.5, 0.02):  # the exact path read at a grid λ is the solved dependency
        on_grid = res.at(lam)
        path = res.analysis.path_tables
        from neudep_assets.lib.covlasso.path import dependency_at

        interp = dependency_at(path["dependency_path_knots"], path["dependency_path"], lam)
        merged = on_grid.merge(interp, left_on=["target", "source"], right_on=["target_class", "source_class"])
        assert len(merged) == len(on_grid) == len(interp)
        assert np.allclose(merged["coef_x"], merged["coef_y"], atol=1e-9)
    assert len(res.at(0.07)) > 0  # off the grid: from the path
    s = res.sparsest("class 7", at_most=0.05)
    assert s["exact"].all() and (s["bound"] == "unexplained_share").all() and set(s["source"]) == {1, 4}
    assert s["unexplained_share"].iloc[0] <= 0.05 + 1e-12
    s1 = res.sparsest(7, max_sources=1)
    assert len(s1) == 1 and s1["n_sources"].iloc[0] == 1
    grid = find_dependencies(F, lambdas=[0.5, 0.02], device="cpu")
    with pytest.raises(ValueError, match="not on the λ grid"):
        grid.at(0.07)
    g = grid.sparsest(7, max_sources=2)
    assert not g["exact"].any() and set(g["source"]) == {1, 4} and g["lambda_rel"].iloc[0] == 0.02
    r = grid.sparsest(7, at_most=0.5, bound="rel_err")  # Table 1's Rel Err, on the grid only
    m = grid.metrics[(grid.metrics["target"] == 7) & (grid.metrics["rel_err"] <= 0.5)]
    assert (r["bound"] == "rel_err").all() and r["n_sources"].iloc[0] == m["n_sources"].min()
    with pytest.raises(ValueError, match="bound must be"):
        grid.sparsest(7, at_most=0.5, bound="fit_rel_err")
    fig = grid.star("class 7")
    assert type(fig).__name__ == "Figure" and fig.get_size_inches()[0] > 3


# -- bad input: named, before any work ---------------------------------------------------------------

F0, L0 = planted(50, 3)
BAD_WITHIN = [
    (dict(fit_logits=F0[:, 0]), "fit_logits must be a 2-D"),
    (dict(fit_logits=F0[None]), "fit_logits must be a 2-D"),
    (dict(fit_logits=F0[:, :1]), "fit_logits must have at least 1 sample and 2 classes"),
    (dict(fit_logits=np.where(np.arange(8) == 3, np.nan, F0)), "fit_logits: 50 non-finite"),
    (dict(fit_logits=F0.astype(complex)), "fit_logits must hold real numbers"),
    (dict(fit_logits=F0, eval_logits=np.where(np.arange(8) == 2, np.inf, F0)), "eval_logits: 50 non-finite"),
    (dict(fit_logits=F0, eval_logits=F0[:, :5]), "eval_logits has 5 classes"),
    (dict(fit_logits=F0, eval_logits=F0, eval_labels=L0[:40]), "eval_labels has 40 labels but eval_logits has 50"),
    (dict(fit_logits=F0, eval_labels=L0[:40]), "eval_labels has 40 labels but fit_logits has 50"),
    (dict(fit_logits=F0, eval_labels=L0 + 8), r"eval_labels must lie in \[-1, 8\)"),
    (dict(fit_logits=F0, eval_labels=L0 + 0.5), "eval_labels must be integer"),
    (dict(fit_logits=F0, class_names=["a"] * 7), "class_names has 7 names but the logits have 8"),
    (dict(fit_logits=F0, class_names="abcdefgh"), "class_names must be a list"),
    (dict(fit_logits=F0, class_names=list(range(8))), "class_names must be strings"),
    (dict(fit_logits=F0, gauge="mean"), "gauge must be one of raw, centered"),
    (dict(fit_logits=F0, device="tpu"), "device must be one of"),
    (dict(fit_logits=F0, lambda_mode="log"), "lambda_mode must be one of"),
    (dict(fit_logits=F0, lambdas=[0.1, 1.5]), r"must lie in \(0, 1\], got \[1.5\]"),
    (dict(fit_logits=F0, lambdas=[0.0]), r"must lie in \(0, 1\]"),
    (dict(fit_logits=F0, lambdas=[float("nan")]), "lambdas must be a non-empty sequence of finite numbers"),
    (dict(fit_logits=F0, lambdas=[]), "lambdas must be a non-empty"),
    (dict(fit_logits=F0, lambdas=[-1.0], lambda_mode="absolute"), "lambdas must be a non-empty sequence of finite"),
    (dict(fit_logits=F0, lambdas=[0.1, 0.1]), "lambdas has duplicates"),
    (dict(fit_logits=F0, target_chunk=0), "target_chunk must be a positive integer"),
    (dict(fit_logits=F0, exact_path="yes"), "exact_path must be True or False"),
]


@pytest.fixture()
def no_work(monkeypatch):
    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")
    for name in ("second_moment", "between_moments", "solve"):
        monkeypatch.setattr(api_deps, name, work)


@pytest.mark.parametrize("kwargs, message", BAD_WITHIN, ids=[m for _, m in BAD_WITHIN])
def test_bad_input_to_find_dependencies_is_named_before_any_work(no_work, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        find_dependencies(**kwargs)


BAD_BETWEEN = [
    (dict(source_fit=F0, target_fit=F0[:40]), "target_fit has 40 samples .* but source_fit has 50"),
    (dict(source_fit=F0, target_fit=F0[:, :6]), "target_fit has 6 classes"),
    (dict(source_fit=F0, target_fit=F0, source_eval=F0), "give both"),
    (dict(source_fit=F0, target_fit=F0, source_eval=F0, target_eval=F0[:30]), "target_eval has 30 samples"),
    (dict(source_fit=F0, target_fit=F0, source_eval=F0[:, :3], target_eval=F0), "source_eval has 3 classes"),
    (dict(source_fit=F0, target_fit=np.full_like(F0, np.inf)), "target_fit: 400 non-finite"),
    (dict(source_fit=F0, target_fit=F0, gauge="RAW"), "gauge must be one of"),
]


@pytest.mark.parametrize("kwargs, message", BAD_BETWEEN, ids=[m for _, m in BAD_BETWEEN])
def test_bad_input_to_between_dependencies_is_named_before_any_work(no_work, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        between_dependencies(**kwargs)


def test_torch_tensors_are_accepted_as_numpy(data):
    torch = pytest.importorskip("torch")
    F, E, lab = data
    a = find_dependencies(torch.from_numpy(F), eval_logits=torch.from_numpy(E), eval_labels=torch.from_numpy(lab),
                          lambdas=[0.1], device="cpu")
    b = find_dependencies(F, eval_logits=E, eval_labels=lab, lambdas=[0.1], device="cpu")
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    with pytest.raises(ValueError, match="fit_logits: 1 non-finite"):
        find_dependencies(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


# -- save and the store ---------------------------------------------------------------------------------

def test_save_is_certified_idempotent_and_read_back(data, tmp_path):
    F, E, lab = data
    res = find_dependencies(F, eval_logits=E, eval_labels=lab, lambdas=[0.5, 0.1], class_names=NAMES, device="cpu")
    store = open_store(tmp_path / "data")
    key = res.save(store, model="m")
    assert res.save(tmp_path / "data", model="m") == key  # found, not written twice
    assert res.save(store, model="other") != key  # other lineage, another analysis
    assert store.sql("SELECT count(DISTINCT dependency_run_id) AS n FROM dependency_runs")["n"][0] == 2
    got = store.dependencies("m", lambda_rel=0.1)
    want = res.at(0.1)
    assert got[["target", "source"]].sort_values(["target", "source"]).values.tolist() == \
        want[["target", "source"]].sort_values(["target", "source"]).values.tolist()
    assert set(got["target_name"]) <= set(NAMES) and got["dependency_run_id"].eq(key).all()
    assert len(store.dependencies("m", lambda_rel=0.1, gauge="centered")) == 0
    share = store.dependency_share()
    assert set(share["model"]) == {"m", "other"}
    with pytest.raises(ValueError, match="gauge must be one of"):
        store.dependencies("m", gauge="none")
    # every cookbook query runs, from the folder, with its parameters checked
    params = {"model": "m", "lam": 0.1, "target": "%", "bound": "rel_err", "at_most": 0.2, "parent": "m", "gauge": "raw", "old": "x",
              "new": "y", "threshold": 0.05}
    from neudep_assets.api.store import QUERIES, cookbook_names, query_params

    assert len(cookbook_names()) == len(list(QUERIES.glob("*.sql"))) >= 10
    for name in cookbook_names():
        wanted = query_params((QUERIES / f"{name}.sql").read_text())
        assert isinstance(getattr(store, name)(**{k: params[k] for k in wanted}), pd.DataFrame)
    with pytest.raises(ValueError, match=r"missing \['lam'\]"):
        store.cookbook("edge_survival", model="m")
    with pytest.raises(ValueError, match=r"unknown \['x'\]"):
        store.cookbook("models", x=1)
    with pytest.raises(ValueError, match="no cookbook query 'nope'"):
        store.cookbook("nope")
    with pytest.raises(AttributeError, match="cookbook queries"):
        store.nope()


def test_save_refuses_uncertified_wrong_lineage_and_other_class_names(data, tmp_path):
    F, _, _ = data
    res = find_dependencies(F, lambdas=[0.1], class_names=NAMES, device="cpu")
    res.analysis.per_target.loc[3, "kkt"] = 1e-3
    with pytest.raises(ValueError, match="1 of 8 CovLasso solutions exceed tol = 1e-09.*nothing was written"):
        res.save(tmp_path / "data", model="m")
    assert not (tmp_path / "data" / "store").exists()
    res.analysis.per_target.loc[3, "kkt"] = 0.0
    with pytest.raises(ValueError, match="source_model must be None"):
        res.save(tmp_path / "data", model="m", source_model="x")
    with pytest.raises(ValueError, match="model must be a non-empty string"):
        res.save(tmp_path / "data", model="")
    res.save(tmp_path / "data", model="m", dataset_id="d")
    other = find_dependencies(F, lambdas=[0.1], device="cpu")  # default names
    with pytest.raises(ValueError, match="dataset_id 'd' has 8 other class names"):
        other.save(tmp_path / "data", model="m", dataset_id="d")
    b = between_dependencies(F, F[:, ::-1].copy(), lambdas=[0.1], device="cpu")
    with pytest.raises(ValueError, match="source_model: a between-model analysis needs"):
        b.save(tmp_path / "data", model="m")


def test_open_store_rejects_what_is_not_a_root(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="data_root_or_url"):
        open_store(tmp_path / "f")
    with pytest.raises(TypeError, match="data_root_or_url"):
        open_store(3)
    with pytest.raises(Exception, match="read-only"):
        open_store(tmp_path).sql("CREATE TABLE t (x INT)")


# -- model_logits -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from PIL import Image

    from neudep_assets.lib.models import ModelSpec, create_model, save_checkpoint

    root = tmp_path_factory.mktemp("ml")
    spec = ModelSpec.from_dict({"name": "tiny", "arch": "resnet10t", "model_args": {"channels": [8, 8, 16, 16]}})
    model = create_model(spec, num_classes=3, in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3, img_size=24)
    save_checkpoint(model, root / "ckpt", model_args=spec.model_args)
    rng = np.random.default_rng(0)
    for k, name in enumerate(("ant", "bee", "cow")):
        (root / "images" / name).mkdir(parents=True)
        for j in range(3):
            Image.fromarray(rng.integers(0, 255, size=(24, 24, 3), dtype=np.uint8)).save(root / "images" / name / f"{j}.png")
    return root


def test_model_logits_is_the_pipelines_logits(checkpoint, capsys):
    from neudep_assets.lib.models import compute_logits, imagefolder_logits, load_checkpoint

    model = load_checkpoint(checkpoint / "ckpt")
    out = model_logits(checkpoint / "ckpt", checkpoint / "images", batch_size=4, device="cpu")
    ref, labels, ids, names = imagefolder_logits(model, checkpoint / "images", batch_size=4)
    assert np.array_equal(out.logits, ref) and np.array_equal(out.labels, labels)
    assert out.class_names == ["ant", "bee", "cow"] and out.sample_ids == ids
    assert "9/9" in capsys.readouterr().err  # the progress bar
    batch = np.random.default_rng(1).integers(0, 256, size=(5, 3, 24, 24), dtype=np.uint8)
    got = model_logits(str(checkpoint / "ckpt"), batch, device="cpu", progress=False)
    assert got.labels is None and np.array_equal(
        got.logits, compute_logits(model, batch, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=5))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("images, kwargs, error, message", [
    ("missing", {}, FileNotFoundError, "images: .* is not a folder"),
    (np.zeros((2, 2), np.uint8), {}, ValueError, r"images must be \(N, H, W\) or \(N, C, H, W\)"),
    (np.full((2, 3, 8, 8), 2.0), {}, ValueError, r"float images must lie in \[0, 1\]"),
    (np.full((2, 3, 8, 8), np.nan), {}, ValueError, "images hold NaN"),
    (np.zeros((2, 3, 8, 8), np.uint8), {"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    (np.zeros((2, 3, 8, 8), np.uint8), {"device": "gpu"}, ValueError, "device must be one of"),
])
def test_model_logits_bad_input(checkpoint, tmp_path, images, kwargs, error, message):
    if isinstance(images, str):
        images = tmp_path / images
    with pytest.raises(error, match=message):
        model_logits(checkpoint / "ckpt", images, **kwargs)


def test_model_logits_offline_hub_name_gives_the_libs_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf
    import timm.models._builder as builder

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # nothing cached: the hub would be asked
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # and answers at once that it is offline (no 46 s of retries)

    from neudep_assets.lib.models import CheckpointError, PretrainedWeightsUnavailable

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' (offline mode)")
    monkeypatch.setattr(builder, "load_pretrained", offline)
    with pytest.raises(PretrainedWeightsUnavailable, match="cannot be downloaded.*local timm checkpoint folder"):
        model_logits("resnet10t.c3_in1k", np.zeros((1, 3, 8, 8), np.uint8), device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        model_logits(Path("no/such/folder"), np.zeros((1, 3, 8, 8), np.uint8), device="cpu")


@pytest.mark.parametrize("module", ["dependencies", "result", "store", "logits"])
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    """The numpydoc Examples of the public API are doctests, and they pass."""
    import doctest
    import importlib

    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(f"neudep_assets.api.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
