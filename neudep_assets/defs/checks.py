"""Asset checks: symmetric PSD moments (blocking), and the certificate of a dependency analysis.

The certificate is a check of the dependency assets themselves (`check_specs`): it is evaluated
before anything is written, and an analysis whose worst relative KKT violation exceeds its own
configured `tol` is never committed (the asset fails, naming the worst targets; downstream assets
do not run). Non-finite logits are refused by the logits asset itself, before anything is written.
"""

import dagster as dg
import numpy as np
import pandas as pd

from neudep_assets.defs.model_assets import moments
from neudep_assets.defs.partitions import models_partitions
from neudep_assets.lib.analysis.moments import psd_report
from neudep_assets.lib.analysis.store_rows import uncertified  # noqa: F401 (one certificate: the API's too)
from neudep_assets.lib.store import load_arrays

CERTIFIED = "certified"


def certificate_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(CERTIFIED, asset=asset, blocking=True, description=(
        "Every CovLasso solution (target × λ) has a relative KKT violation within the analysis's own tol; "
        "an analysis that fails is not written."))


def certificate(per_target: pd.DataFrame, tol: float, lambdas, class_names, *, run_key: str = "",
                rows: list[dict] | pd.DataFrame | None = None) -> dg.AssetCheckResult:
    """The certificate of one analysis: passed when every solution's relative KKT is ≤ its tol. `rows`
    (its dependency_runs rows) name the model, the pair and the gauge in the UI, where one check result
    per partition and gauge would otherwise look alike."""
    n_bad, worst = uncertified(per_target, tol, lambdas, class_names)
    kkt = per_target["kkt"].to_numpy(dtype=float)
    r = (rows.iloc[0].to_dict() if isinstance(rows, pd.DataFrame) else rows[0]) if rows is not None and len(rows) else {}
    who = r.get("model", "?") if r.get("source_model") in (None, r.get("model")) else f"{r['source_model']} → {r['model']}"
    worst_kkt = float(np.nanmax(kkt)) if np.isfinite(kkt).any() else float("nan")
    verdict = (f"all {len(kkt)} solutions certified" if not n_bad else f"{n_bad} of {len(kkt)} solutions NOT certified")
    return dg.AssetCheckResult(
        check_name=CERTIFIED, passed=not n_bad,
        description=f"{who} ({r.get('logit_gauge') or 'raw'} gauge, {len(lambdas)} λ): {verdict}; worst relative KKT "
                    f"{worst_kkt:.1e} (tol {tol:.0e})",
        metadata={"model": who, "logit_gauge": r.get("logit_gauge") or "raw", "analysis": run_key,
                  "max_relative_kkt": worst_kkt, "tolerance": float(tol), "uncertified_solutions": n_bad,
                  "solutions": len(kkt),
                  "worst_targets": dg.MetadataValue.md("\n".join(f"- {w}" for w in worst) or "none")})


@dg.asset_check(asset=moments, blocking=True, partitions_def=models_partitions)
def moments_symmetric_psd(moments: dict) -> dg.AssetCheckResult:
    """C is symmetric and positive semi-definite up to rounding."""
    report = psd_report(load_arrays(moments["path"])["C"])
    ok = report["relative_asymmetry"] <= 1e-12 and report["relative_min_eigenvalue"] >= -1e-10
    return dg.AssetCheckResult(passed=ok, metadata=report)
