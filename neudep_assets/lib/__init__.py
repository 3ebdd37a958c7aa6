"""The science of neudep (no Dagster here). Imports run one way, bottom to top:

specs, config, store (files, code_version)  ←  data  ←  models  ←  covlasso  ←  analysis  ←  report

(`analysis` never imports `models`; `covlasso` needs only numpy/numba/torch.)
"""

from pathlib import Path as _Path

from neudep_assets.lib import numba_cache as _numba_cache

_numba_cache.sync(_Path(__file__).resolve().parent)  # before any kernel is loaded from numba's cache
