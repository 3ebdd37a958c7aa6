"""The CovLasso solver: exact homotopy per target (numba on CPU threads, batched torch on a GPU), certified."""

from neudep_assets.lib.covlasso.problem import path_errors, target_rhs
from neudep_assets.lib.covlasso.solver import CovLassoPath, kkt_violation, solve_path

__all__ = ["CovLassoPath", "kkt_violation", "solve_path", "path_errors", "target_rhs"]
