"""The code location built when it is loaded, from NEUDEP_CONFIG / NEUDEP_DATA at that moment: what
out-of-process executors (Dask workers) load by code pointer."""

import dagster as dg

from neudep_assets.definitions import build_defs


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs()
