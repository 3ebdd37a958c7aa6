"""neudep's public Python API: a notebook's way in, the same code path the pipeline's assets use.

- :func:`find_dependencies` / :func:`between_dependencies`: dependencies of logits in memory (numpy or
  torch), as a :class:`Dependencies` result (edges, Table-1 metrics, diagnostics, star pictures) that
  ``.save`` commits into a result store as the assets do;
- :func:`model_logits`: raw logits of a timm model on an ImageFolder or an image batch;
- :func:`open_store`: the result store, read-only: SQL, a model's dependencies, the cookbook queries.

See docs/api.md.
"""

from neudep_assets.api.dependencies import between_dependencies, find_dependencies
from neudep_assets.api.logits import ModelLogits, model_logits
from neudep_assets.api.result import Dependencies
from neudep_assets.api.store import Store, open_store

__all__ = ["find_dependencies", "between_dependencies", "model_logits", "open_store", "Dependencies",
           "ModelLogits", "Store"]
