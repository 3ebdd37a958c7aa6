"""Analyses of logits: second moments, dependency analyses (Table 1, §2.2/§2.3 theory), comparisons."""

from neudep_assets.lib.analysis.comparisons import compare
from neudep_assets.lib.analysis.dependencies import DependencyAnalysis, analyse, best_targets, summarize
from neudep_assets.lib.analysis.moments import LogitsError, check_aligned, check_finite, second_moment

__all__ = ["compare", "DependencyAnalysis", "analyse", "best_targets", "summarize", "LogitsError", "check_aligned",
           "check_finite", "second_moment"]
