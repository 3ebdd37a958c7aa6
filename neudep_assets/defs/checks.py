"""Blocking asset checks: finite logits, symmetric PSD moments, certified CovLasso solutions."""


import dagster as dg
import numpy as np

from neudep_assets.defs.dependency_assets import between_dependencies, dependencies
from neudep_assets.defs.model_assets import logits, moments
from neudep_assets.defs.partitions import models_partitions, pairs_partitions
from neudep_assets.defs.resources import Neudep
from neudep_assets.lib.analysis.moments import psd_report
from neudep_assets.lib.store import load_arrays

KKT_TOLERANCE = 1e-8  # relative KKT violation accepted as a certificate of optimality


@dg.asset_check(asset=logits, blocking=True, partitions_def=models_partitions)
def logits_finite(logits: dict) -> dg.AssetCheckResult:
    """Every stored logit of every split is finite."""
    bad = {split: int((~np.isfinite(load_arrays(s["path"])["logits"])).sum()) for split, s in logits["splits"].items()}
    return dg.AssetCheckResult(passed=not any(bad.values()), metadata={f"non_finite_{k}": v for k, v in bad.items()})


@dg.asset_check(asset=moments, blocking=True, partitions_def=models_partitions)
def moments_symmetric_psd(moments: dict) -> dg.AssetCheckResult:
    """C is symmetric and positive semi-definite up to rounding."""
    report = psd_report(load_arrays(moments["path"])["C"])
    ok = report["relative_asymmetry"] <= 1e-12 and report["relative_min_eigenvalue"] >= -1e-10
    return dg.AssetCheckResult(passed=ok, metadata=report)


def _certificate(store, run_key: str) -> dg.AssetCheckResult:
    m = store.read("dependency_metrics", run_key)
    worst = float(m["kkt"].max())
    return dg.AssetCheckResult(passed=bool(worst <= KKT_TOLERANCE), metadata={
        "max_relative_kkt": worst, "tolerance": KKT_TOLERANCE,
        "uncertified_solutions": int((m["kkt"] > KKT_TOLERANCE).sum()), "solutions": len(m)})


@dg.asset_check(asset=dependencies, blocking=True, partitions_def=models_partitions)
def dependencies_certified(neudep: Neudep, dependencies: dict) -> dg.AssetCheckResult:
    """Every CovLasso solution (target × λ) has a relative KKT violation within tolerance."""
    return _certificate(neudep.store(), dependencies["dependency_run_id"])


@dg.asset_check(asset=between_dependencies, blocking=True, partitions_def=pairs_partitions)
def between_dependencies_certified(neudep: Neudep, between_dependencies: dict) -> dg.AssetCheckResult:
    """Every between-model CovLasso solution has a relative KKT violation within tolerance."""
    if between_dependencies["dependency_run_id"] is None:  # source = target: checked as `dependencies`
        return dg.AssetCheckResult(passed=True, metadata={"solutions": 0})
    return _certificate(neudep.store(), between_dependencies["dependency_run_id"])
