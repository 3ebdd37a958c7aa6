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
