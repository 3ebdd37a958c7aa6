"""neudep: neural dependencies in image classifiers, as a Dagster pipeline, with a Python API.

``from neudep_assets import find_dependencies, between_dependencies, model_logits, open_store``
(see docs/api.md). The API is imported on first use, so that importing the package (Dagster's code
location, ``neudep_assets.lib.config``) stays light.
"""

import os

# torch's OpenMP threads spin-wait by default; with 2 cores and anything else busy that costs ~15x.
# It only takes effect if set before torch is imported, which is why it lives here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["find_dependencies", "between_dependencies", "model_logits", "open_store", "Dependencies",
           "ModelLogits", "Store"]


def __getattr__(name: str):
    if name in __all__:
        from neudep_assets import api

        return getattr(api, name)
    raise AttributeError(f"module 'neudep_assets' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
