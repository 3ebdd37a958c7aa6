"""`neudep explore`: look at every class's dependencies, along λ, across models and checkpoints, in a
browser. Read-only: every number comes from the store's sandboxed queries."""

from neudep_assets.explore.app import make_app, serve

__all__ = ["make_app", "serve"]
