"""The certificate of an analysis is judged against its own tol; NaN never passes."""

from pathlib import Path

import pandas as pd
import pytest

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


def test_certificate_results_say_which_model_pair_and_gauge_they_are():
    """Four "Passed" rows in the UI must be told apart: the description names the pair, gauge and analysis."""
    m = _metrics([1e-12, 5e-13, 2e-12])
    within = certificate(m, 1e-9, [0.5, 0.1], NAMES, run_key="within-1",
                         rows=[{"model": "cnn", "source_model": "cnn", "logit_gauge": "centered"}])
    between = certificate(m, 1e-9, [0.5, 0.1], NAMES, run_key="between-2",
                          rows=pd.DataFrame([{"model": "vit", "source_model": "cnn", "logit_gauge": "raw"}]))
    assert within.description.startswith("cnn (centered gauge, 2 λ): all 3 solutions certified")
    assert between.description.startswith("cnn → vit (raw gauge")
    assert between.metadata["analysis"].value == "between-2" and within.metadata["model"].value == "cnn"


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
                              per_class=t["class_diagnostics"], path_tables={})
        extra = {"comparisons": pd.DataFrame({"comparison_id": [key], "metric": ["extra"], "value": [1.0]})}
        check = _write_results(store, key, res, t["dependency_runs"], "run", eff=eff, class_names=NAMES, extra=extra)
        assert check.passed == (key == "good")
    assert not store.has_analysis("bad") and store.has_analysis("good")
    assert sorted(p.name for p in store.analysis_dir("good").iterdir()) == ["_COMMITTED.json",
        "class_diagnostics.parquet", "comparisons.parquet", "dependencies.parquet", "dependency_metrics.parquet",
        "dependency_runs.parquet"]
    assert store.query("SELECT DISTINCT dependency_run_id FROM dependency_summary")["dependency_run_id"].tolist() == [
        "good"]
    assert store.query("SELECT comparison_id FROM comparisons")["comparison_id"].tolist() == ["good"]


@pytest.mark.parametrize("source, target, config", [("a", "a", "tiny.yaml"), ("cnn.reg0", "a", "tiny_uses.yaml")])
def test_a_pair_never_computed_succeeds_with_its_certificate_and_computes_nothing(tmp_path, source, target, config):
    """between_dependencies[a|a] is the within analysis, and a derived model's pair (a regularization
    child, here of tiny_uses.yaml's cnn) is not paired: nothing is solved or written, the output says
    why, and the blocking `certified` check (a check_spec of the asset) still reports, passed."""
    import dagster as dg

    from neudep_assets.defs.dependency_assets import between_dependencies
    from neudep_assets.defs.partitions import models_partitions, pair_key, targets_partitions
    from neudep_assets.defs.resources import default_resources
    from neudep_assets.lib.store import ResultStore

    @dg.asset(name="dataset")
    def dataset_stub():
        return {}

    @dg.asset(name="moments", partitions_def=models_partitions)
    def moments_stub():
        return {}

    @dg.asset(name="target_logits", partitions_def=targets_partitions)
    def target_logits_stub():
        return {}

    res = default_resources(str(Path(__file__).with_name(config)), str(tmp_path))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("models", sorted({source, target}))
        instance.add_dynamic_partitions("model_targets", [target])
        dg.materialize([dataset_stub], instance=instance, resources=res)
        dg.materialize([moments_stub], instance=instance, partition_key=source, resources=res)
        dg.materialize([target_logits_stub], instance=instance, partition_key=target, resources=res)
        result = dg.materialize([between_dependencies, dataset_stub, moments_stub, target_logits_stub],
                                selection=[between_dependencies], instance=instance, resources=res,
                                partition_key=pair_key(source, target))
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["solutions"].value == 0
    assert result.output_for_node("between_dependencies")["dependency_run_id"] is None
    [mat] = result.get_asset_materialization_events()
    meta = mat.materialization.metadata
    assert meta["computed"].value is False
    assert ("dependencies[a]" if source == target else "derived") in meta["note"].value
    assert ResultStore(tmp_path).query("SELECT count(*) AS n FROM dependency_runs")["n"][0] == 0
