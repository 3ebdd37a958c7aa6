"""The CovLasso solver: exact homotopy per target (numba on CPU threads, batched torch on a GPU), certified."""

from neudep_assets.lib.covlasso.problem import path_errors, target_rhs
from neudep_assets.lib.covlasso.solver import CovLassoPath, concat_paths, kkt_violation, solve_path
from neudep_assets.lib.covlasso.sparse import SparseCoef, coef_of, path_errors_sparse, refit

__all__ = ["CovLassoPath", "SparseCoef", "coef_of", "concat_paths", "kkt_violation", "solve_path", "path_errors",
           "path_errors_sparse", "refit", "target_rhs"]
