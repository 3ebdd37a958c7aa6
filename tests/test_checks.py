"""The certificate of an analysis is judged against its own tol; NaN never passes."""

import pandas as pd

from neudep_assets.defs.checks import certificate, uncertified

NAMES = ["alpha", "beta", "gamma"]


def _metrics(kkt):
    return pd.DataFrame({"lambda_index": [0, 0, 1], "target_class": [0, 1, 2], "kkt": kkt})


def test_certificate_uses_the_analysis_tol_and_names_the_worst_targets():
    m = _metrics([1e-12, 5e-7, 2e-6])
    assert certificate(m, 1e-5, [0.5, 0.1], NAMES).passed  # a loose tol passes what 1e-8 would refuse
    check = certificate(m, 1e-6, [0.5, 0.1], NAMES)
    assert not check.passed and check.metadata["uncertified_solutions"].value == 1
    assert uncertified(m, 1e-9, [0.5, 0.1], NAMES) == (2, ["'gamma' (class 2) at λ=0.1: KKT 2.00e-06",
                                                          "'beta' (class 1) at λ=0.5: KKT 5.00e-07"])


def test_a_nan_certificate_fails():
    n, worst = uncertified(_metrics([0.0, float("nan"), 0.0]), 1e-9, [0.5, 0.1], NAMES)
    assert n == 1 and worst[0].startswith("'beta'")
    assert not certificate(_metrics([0.0, float("nan"), 0.0]), 1e-9, [0.5, 0.1], NAMES).passed


def test_write_results_commits_every_table_of_a_certified_analysis_and_nothing_else(tmp_path):
    """The asset's write path: extra tables of other features land in the same commit; an analysis
    above its own tol writes nothing at all."""
    from types import SimpleNamespace

    from neudep_assets.defs.dependency_assets import _write_results
    from neudep_assets.lib.config import DependencyConfig
    from neudep_assets.lib.store import ResultStore
    from tests.test_queries import _analysis

    store = ResultStore(tmp_path)
    eff = DependencyConfig(lambdas=(0.1,), tol=1e-6)
    for key, kkt in (("bad", 1e-3), ("good", 1e-7)):
        t = _analysis(key, "c" * 64, [0.1], [1, 1, 1], [0.1] * 3)
        res = SimpleNamespace(edges=t["dependencies"], per_target=t["dependency_metrics"].assign(kkt=[0.0, kkt, 0.0]),
                              per_class=t["class_diagnostics"])
        extra = {"comparisons": pd.DataFrame({"comparison_id": [key], "metric": ["extra"], "value": [1.0]})}
        check = _write_results(store, key, res, t["dependency_runs"], "run", eff=eff, class_names=NAMES, extra=extra)
        assert check.passed == (key == "good")
    assert not store.has_analysis("bad") and store.has_analysis("good")
    assert sorted(p.name for p in store.analysis_dir("good").iterdir()) == [
        "class_diagnostics.parquet", "comparisons.parquet", "dependencies.parquet", "dependency_metrics.parquet",
        "dependency_runs.parquet"]
    assert store.query("SELECT DISTINCT dependency_run_id FROM dependency_summary")["dependency_run_id"].tolist() == [
        "good"]
    assert store.query("SELECT comparison_id FROM comparisons")["comparison_id"].tolist() == ["good"]
