"""The §3.2 / §3.3 tables as the Dagster UI shows them: few columns, 'mean ± std' (no-break spaces), the
unit in the header."""

import re

import numpy as np
import pandas as pd

from neudep_assets.defs.uses_assets import incremental_tables, table3_md

INCREMENTAL = pd.DataFrame([dict(model="cnn", setting="90/10", method=m, classes="11 → 1", base_model="base-truncated",
                                 seeds=2, overall=91.234, overall_std=0.5, base=92.0, base_std=0.0, new=75.0,
                                 new_std=np.nan, pos_neg=80.5, pos_neg_std=1.25, epoch_s=0.01234, time_ratio=0.03125,
                                 epoch_cached_s=0.00035297374743657045, time_ratio_cached=np.nan)
                            for m in ("all_classes", "linear_head", "theta_head")])


def _rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]


def test_incremental_tables_are_narrow_and_read_in_percent_with_std():
    meta = incremental_tables(INCREMENTAL)
    acc, times = _rows(meta["table_2_4"].value), _rows(meta["epoch_times"].value)
    assert acc[0] == ["setting", "method", "classes", "seeds", "overall %", "base group %", "new group %", "pos & neg %"]
    assert len(acc[0]) <= 8 and len(times[0]) <= 7  # the UI's metadata column shows them whole
    assert [c.replace("\u00a0", " ") for c in acc[2][4:]] == ["91.2 ± 0.5", "92.0 ± 0.0", "75.0 ± 0.0", "80.5 ± 1.2"]
    assert "\u00a0±\u00a0" in acc[2][4]  # no-break spaces: the cell does not wrap
    assert acc[2][1:3] == ["all\u00a0classes", "11\u00a0→\u00a01"]
    assert times[2][3:] == ["0.0123 s", "3.12%", "0.000353 s", "–"]
    text = meta["table_2_4"].value + meta["epoch_times"].value
    assert "nan" not in text and not re.search(r"\d\.\d{7,}", text)  # no raw floats, no nan


def test_table3_reads_accuracy_in_percent_and_coefficients_with_std():
    t3 = pd.DataFrame([dict(parent_model="cnn", pair="a  ~  b", role=r, alpha=al, seeds=2, acc=0.8123, acc_std=0.01,
                            coef_ab=0.25, coef_ab_std=0.0, coef_ba=-0.125, coef_ba_std=0.01, parent_coef=0.3,
                            ood_aupr=0.6, ood_aupr_std=0.02, lambda_rel=0.02, logit_gauge="raw")
                       for r, al in (("control", 0.0), ("regularized", 1.0))])
    rows = _rows(table3_md(t3).value)
    assert rows[0] == ["pair", "role", "alpha", "seeds", "val accuracy %", "coef a ← b", "coef b ← a", "parent coef",
                       "OOD AUPR"]
    assert [c.replace("\u00a0", " ") for c in rows[3][4:]] == [
        "81.2 ± 1.0", "0.250 ± 0.000", "-0.125 ± 0.010", "0.300", "0.600 ± 0.020"]
