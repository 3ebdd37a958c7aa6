"""The bench scripts run end to end at a small size (their figures are measured by hand, not here)."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scale_bench_runs_the_asset_path_and_reports_a_certified_analysis(capsys):
    _load("scale").main(["--n", "300", "--d", "20", "--samples", "2000", "--eval-samples", "400",
                         "--chunk", "128", "--lambdas", "0.3", "0.1"])
    out = capsys.readouterr().out
    assert len(re.findall(r"targets \d+–\d+ of 300 solved", out)) == 3  # chunks of 128
    assert "certified 1.0000" in out
    assert "rank of C 21 (dense eigendecomposition)" in out  # d features + the bias
    assert re.search(r"analysis / solve = [\d.]+×", out)
