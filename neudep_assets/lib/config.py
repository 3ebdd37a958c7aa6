"""The project config (`neudep.yaml`) and the data root, with errors that name the file and key.

The keys, their types and bounds live in one place, `config_schema`; this module reads the file
(`config_yaml`: size and alias limits), validates it against the schema, and returns the frozen
dataclasses the pipeline uses (their fields are the schema's; their hashes are content addresses).
`NEUDEP_CONFIG` picks another config file, `NEUDEP_DATA` another data root, so that several
experiments stay apart. `NEUDEP_STORE` (or the config's `store:`) puts the result store elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neudep_assets.lib.config_schema import (BASE_OPTIONS, EXECUTORS, INCREMENTAL_SPLITS, LOGIT_GAUGES, SPLITS,
                                             ConfigError, DependencySchema, IncrementalSchema, ProjectSchema,
                                             RegularizationSchema, check, plain_lists, split_problem)
from neudep_assets.lib.config_yaml import load_yaml
from neudep_assets.lib.specs import GlyphConfig, ModelSpec

__all__ = ["BASE_OPTIONS", "EXECUTORS", "INCREMENTAL_SPLITS", "LOGIT_GAUGES", "SPLITS", "ConfigError", "DatasetConfig",
           "DependencyConfig", "ExecutorConfig", "IncrementalConfig", "ProjectConfig", "RegularizationConfig",
           "config_path", "data_root", "load_config", "split_sizes", "stable_hash", "stable_json", "store_location"]

DEFAULT_CONFIG = "neudep.yaml"
DEFAULT_LAMBDAS = (0.5, 0.2, 0.1, 0.05, 0.02)
DEFAULT_WATCH = "checkpoints/incoming"  # under the data root
DEFAULT_SCHEDULE = "0 4 * * 1"  # weekly: Monday 04:00 UTC


@dataclass(frozen=True)
class DatasetConfig:
    """`kind: glyphs` (the embedded default) or `kind: imagefolder` (one folder per split)."""

    kind: str = "glyphs"
    glyphs: GlyphConfig = field(default_factory=GlyphConfig)
    name: str = ""
    splits: dict[str, str] = field(default_factory=dict)  # imagefolder: split -> folder


@dataclass(frozen=True)
class DependencyConfig:
    """The λ grid and the splits the CovLasso is fit on and evaluated on."""

    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    lambda_mode: str = "relative"
    fit_split: str = "train"
    eval_split: str = "val"
    tol: float = 1e-9
    star_plots: int = 4  # strongest targets shown as star pictures in the UI
    target_chunk: int | None = None  # solve and certify this many targets at a time (None: all at once)
    chunk_steps: int = 1  # Dagster steps the targets of one analysis are spread over (each merged into one commit)
    # raw: the paper's logits (Remark 1); centered: each sample's logits minus their mean over the classes
    logit_gauge: str = "raw"
    gauge_crosscheck: bool = True  # also analyse the other gauge, within-model, at the λ closest to 0.1
    store_path: bool = False  # keep each target's exact path (knots, λ_max → smallest λ) in the store: big

    def validate(self, where: str) -> None:
        """ConfigError naming ``where`` and the key unless every value is within the schema's bounds
        (a Launchpad override is checked this way)."""
        check(DependencySchema, plain_lists(asdict(self)), where, prefix="dependencies")


def split_sizes(n_classes: int, setting: str, where: str = "") -> tuple[int, int]:
    """(base, new) class counts of a §3.2 split setting; refused naming `incremental.splits` when a side is empty."""
    try:
        return split_problem(n_classes, setting)
    except ValueError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from None


def _known_models(where: str, section: str, models, model_names) -> None:
    for m in models:
        if model_names and m not in model_names:
            raise ConfigError(f"{where}: {section}.models: no model named {m!r} under 'models' "
                              f"(known: {', '.join(model_names)})")


@dataclass(frozen=True)
class IncrementalConfig:
    """§3.2, new categories from old logits (``incremental:`` in neudep.yaml).

    For each model in ``models`` and each split setting: a base checkpoint of the base classes
    (``retrain``: the model's own recipe on the base classes; ``truncate``: the model with the new
    classes' head rows removed, for a model the pipeline cannot retrain; ``auto``: retrain when the
    pipeline trains the model), then the Θ-head and the baselines, each over ``seeds`` seeds.
    ``base_epochs`` > 0 trains the base (and the all-class baseline) for fewer epochs than the
    model's recipe (a lighter profile)."""

    models: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("90/10", "all_but_one")
    split_seed: int = 0
    base: str = "auto"
    base_epochs: int = 0
    seeds: int = 3
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 256
    l1: float = 0.0

    def validate(self, where: str, model_names: tuple[str, ...] = ()) -> None:
        """ConfigError naming ``where`` and the key unless every value is within the schema's bounds."""
        check(IncrementalSchema, plain_lists(asdict(self)), where, prefix="incremental")
        _known_models(where, "incremental", self.models, model_names)


@dataclass(frozen=True)
class RegularizationConfig:
    """§3.3, the dependency regularizer (``regularization:`` in neudep.yaml).

    For each model in ``models``: the pairs to cut (``pairs`` as class names, or, when empty, the
    ``n_pairs`` strongest within-model dependencies at ``lambda_rel`` between unrelated classes, read
    from the model's analysis of gauge ``logit_gauge``), then per seed a fine-tune of the model with
    CE + alpha·Σ|E_batch[f_i f_j]| and the control with alpha = 0 (same steps, seed and data order).
    ``max_steps`` > 0 stops each fine-tune after that many steps (a lighter profile)."""

    models: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    n_pairs: int = 1
    lambda_rel: float = 0.1
    logit_gauge: str = "centered"
    alpha: float = 0.01
    seeds: int = 1
    epochs: int = 1
    max_steps: int = 0
    lr: float = 1e-4
    batch_size: int = 128

    def validate(self, where: str, model_names: tuple[str, ...] = (), lambdas: tuple[float, ...] = ()) -> None:
        """ConfigError naming ``where`` and the key unless every value is within the schema's bounds."""
        check(RegularizationSchema, plain_lists(asdict(self)), where, prefix="regularization")
        _known_models(where, "regularization", self.models, model_names)
        if lambdas and not any(abs(self.lambda_rel - x) < 1e-12 for x in lambdas):
            raise ConfigError(f"{where}: regularization.lambda_rel = {self.lambda_rel} is not on dependencies.lambdas "
                              f"{list(lambdas)}: the coefficients are read from the analyses at that λ")

    def children(self, parent: str) -> list[tuple[str, str, int]]:
        """(child model name, role, seed) of each fine-tune of ``parent``: control and regularized per seed."""
        return [(f"{parent}.{role}{seed}", role, seed) for seed in range(self.seeds) for role in ("ctl", "reg")]

    def derived(self) -> set[str]:
        """The names of every listed parent's children (derived models)."""
        return {child for parent in self.models for child, _, _ in self.children(parent)}


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the steps of a run execute: `in_process`, `multiprocess` (Dagster's default) or `dask`
    (dagster-dask: `scheduler` is the address of an existing cluster; empty starts a local one)."""

    kind: str = "multiprocess"
    scheduler: str = ""
    n_workers: int = 2


@dataclass(frozen=True)
class ProjectConfig:
    path: Path
    dataset: DatasetConfig
    models: tuple[ModelSpec, ...]
    dependencies: DependencyConfig
    device: str = "auto"
    incremental: IncrementalConfig = field(default_factory=IncrementalConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    watch: tuple[str, ...] | None = None  # checkpoint folders to watch; None: <data root>/checkpoints/incoming
    schedule: str = DEFAULT_SCHEDULE  # cron of the rerun of what is stale or failed
    executor: "ExecutorConfig" = field(default_factory=lambda: ExecutorConfig())
    store: str | None = None  # the result store's root (an fsspec URL); None: the data root

    def watch_dirs(self, root: Path) -> list[Path]:
        return [Path(d) for d in self.watch] if self.watch is not None else [Path(root) / DEFAULT_WATCH]

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        known = ", ".join(m.name for m in self.models) or "none"
        raise ConfigError(f"{self.path}: no model named {name!r} under 'models' (known: {known})")

    def model_pairs(self) -> list[tuple[str, str]]:
        """Every ordered pair of distinct models (all share the one dataset)."""
        names = [m.name for m in self.models]
        return [(a, b) for a in names for b in names if a != b]


def config_path() -> Path:
    return Path(os.environ.get("NEUDEP_CONFIG", DEFAULT_CONFIG)).resolve()


def data_root() -> Path:
    return Path(os.environ.get("NEUDEP_DATA", "data")).resolve()


def _store_value(value, where: Path) -> str | None:
    """The config's `store:`: None, or a URL (kept as given) or local path (relative to the config)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: store: must be a local path or an fsspec URL (s3://bucket/prefix…), "
                          f"got {value!r}")
    return value if "://" in value else str((where.parent / value).resolve())


def store_location(root: str | Path | None = None, config: str | Path | None = None) -> tuple[str, str]:
    """(the result store's root URL, where it comes from): env NEUDEP_STORE, else the config file's
    `store:` key, else the data root. Only that key of the config is read (a query needs no valid
    model list); the `where` names the env var or the file and key, for errors."""
    env = os.environ.get("NEUDEP_STORE", "")
    if env:
        return env, "NEUDEP_STORE"
    path = Path(config).resolve() if config else config_path()
    if path.is_file():
        raw = load_yaml(path)
        value = _store_value(raw.get("store"), path) if isinstance(raw, dict) else None
        if value:
            return value, f"{path}: store"
    return str(Path(root).resolve() if root else data_root()), "the data root (NEUDEP_DATA)"


def load_config(path: str | Path | None = None) -> ProjectConfig:
    """Read and validate the project config (config_schema: every key, type and bound); every error names
    the file and the key path, and comes before any work."""
    where = Path(path).resolve() if path else config_path()
    if not where.is_file():
        raise ConfigError(f"config file not found: {where} (set NEUDEP_CONFIG or create neudep.yaml)")
    raw = load_yaml(where)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping with keys dataset, models, dependencies")
    check(ProjectSchema, raw, str(where))
    ds = raw.get("dataset") or {}
    kind = ds.get("kind", "glyphs")
    splits = {k: str((where.parent / v).resolve()) for k, v in (ds.get("splits") or {}).items()} \
        if kind == "imagefolder" else {}
    dataset = DatasetConfig(kind=kind, glyphs=GlyphConfig(**(ds.get("glyphs") or {})), name=str(ds.get("name") or ""),
                            splits=splits)
    models = []
    for i, entry in enumerate(raw.get("models") or []):
        entry = dict(entry)
        if entry.get("checkpoint"):
            entry["checkpoint"] = str((where.parent / entry["checkpoint"]).resolve())
        try:
            models.append(ModelSpec.from_dict(entry))
        except ValueError as exc:
            raise ConfigError(f"{where}: models[{i}]: {exc}") from None
    dep = dict(raw.get("dependencies") or {})
    if "lambdas" in dep:
        dep["lambdas"] = tuple(dep["lambdas"])
    watch = raw.get("watch")
    if watch is not None:
        watch = tuple(str((where.parent / w).resolve()) for w in ([watch] if isinstance(watch, str) else watch))
    return ProjectConfig(path=where, dataset=dataset, models=tuple(models), dependencies=DependencyConfig(**dep),
                         device=raw.get("device", "auto"),
                         incremental=_uses_section(raw, "incremental", IncrementalConfig),
                         regularization=_uses_section(raw, "regularization", RegularizationConfig), watch=watch,
                         schedule=raw.get("schedule", DEFAULT_SCHEDULE),
                         executor=ExecutorConfig(**(raw.get("executor") or {})),
                         store=_store_value(raw.get("store"), where))


def _uses_section(raw: dict, key: str, cls):
    """An `incremental:` / `regularization:` section (validated), lists as tuples."""
    sec = raw.get(key) or {}
    return cls(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                  for k, v in sec.items()})


def stable_json(obj: Any) -> str:
    """Canonical JSON (keys sorted; dataclasses as dicts): what gets hashed and stored as config."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, default=str)


def stable_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of `stable_json(obj)`: the content address of a config."""
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:n]
