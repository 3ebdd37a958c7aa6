"""The project config (`neudep.yaml`) and the data root, with errors that name the file and key.

`NEUDEP_CONFIG` picks another config file, `NEUDEP_DATA` another data root, so that several
experiments stay apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neudep_assets.lib.specs import GlyphConfig, ModelSpec

DEFAULT_CONFIG = "neudep.yaml"
DEFAULT_LAMBDAS = (0.5, 0.2, 0.1, 0.05, 0.02)
DEFAULT_WATCH = "checkpoints/incoming"  # under the data root
DEFAULT_SCHEDULE = "0 4 * * 1"  # weekly: Monday 04:00 UTC
EXECUTORS = ("in_process", "multiprocess", "dask")
SPLITS = ("train", "val", "ood")


class ConfigError(ValueError):
    """A malformed project config; the message names the file and the key."""


@dataclass(frozen=True)
class DatasetConfig:
    """`kind: glyphs` (the embedded default) or `kind: imagefolder` (one folder per split)."""

    kind: str = "glyphs"
    glyphs: GlyphConfig = field(default_factory=GlyphConfig)
    name: str = ""
    splits: dict[str, str] = field(default_factory=dict)  # imagefolder: split -> folder


#: values of ``dependencies.logit_gauge``; the first (the paper's raw logits) is the default
LOGIT_GAUGES = ("raw", "centered")


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
    # raw: the paper's logits (Remark 1); centered: each sample's logits minus their mean over the classes
    logit_gauge: str = "raw"
    gauge_crosscheck: bool = True  # also analyse the other gauge, within-model, at the λ closest to 0.1

    def validate(self, where: str) -> None:
        if self.logit_gauge not in LOGIT_GAUGES:
            raise ConfigError(f"{where}: dependencies.logit_gauge must be one of {', '.join(LOGIT_GAUGES)}, "
                              f"got {self.logit_gauge!r}")
        if not isinstance(self.gauge_crosscheck, bool):
            raise ConfigError(f"{where}: dependencies.gauge_crosscheck must be true or false, "
                              f"got {self.gauge_crosscheck!r}")
        if self.lambda_mode not in ("relative", "absolute"):
            raise ConfigError(f"{where}: dependencies.lambda_mode must be 'relative' or 'absolute', got {self.lambda_mode!r}")
        lams = list(self.lambdas)
        if not lams or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x >= 0 or x == float("inf")
                           for x in lams):
            raise ConfigError(f"{where}: dependencies.lambdas must be a non-empty list of finite numbers ≥ 0, got {lams!r}")
        if len(set(lams)) != len(lams):
            dup = sorted({x for x in lams if lams.count(x) > 1})
            raise ConfigError(f"{where}: dependencies.lambdas has duplicates {dup}: each λ once")
        if self.lambda_mode == "relative" and any(not 0 < x <= 1 for x in lams):
            bad = [x for x in lams if not 0 < x <= 1]
            raise ConfigError(f"{where}: dependencies.lambdas are fractions of λ_max in relative mode and must lie in "
                              f"(0, 1], got {bad}")
        tc = self.target_chunk
        if tc is not None and (isinstance(tc, bool) or not isinstance(tc, int) or tc < 1):
            raise ConfigError(f"{where}: dependencies.target_chunk must be a positive integer (targets per chunk), "
                              f"got {tc!r}")
        for key in ("fit_split", "eval_split"):
            if getattr(self, key) not in SPLITS:
                raise ConfigError(f"{where}: dependencies.{key} must be one of {SPLITS}, got {getattr(self, key)!r}")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1e-2):
            raise ConfigError(f"{where}: dependencies.tol must be a small positive number, got {self.tol!r}")


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
    watch: tuple[str, ...] | None = None  # checkpoint folders to watch; None: <data root>/checkpoints/incoming
    schedule: str = DEFAULT_SCHEDULE  # cron of the rerun of what is stale or failed
    executor: "ExecutorConfig" = field(default_factory=lambda: ExecutorConfig())

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


def _section(raw: dict, key: str, where: Path, allowed: set[str]) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
    unknown = set(value) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} under '{key}' (allowed: {sorted(allowed)})")
    return value


def load_config(path: str | Path | None = None) -> ProjectConfig:
    """Read and validate the project config; every error names the file and the offending key."""
    where = Path(path).resolve() if path else config_path()
    if not where.is_file():
        raise ConfigError(f"config file not found: {where} (set NEUDEP_CONFIG or create neudep.yaml)")
    try:
        raw = yaml.safe_load(where.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping with keys dataset, models, dependencies")
    unknown = set(raw) - {"dataset", "models", "dependencies", "device", "watch", "schedule", "executor"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {sorted(unknown)}")

    ds = _section(raw, "dataset", where, {"kind", "glyphs", "name", "splits"})
    kind = ds.get("kind", "glyphs")
    if kind not in ("glyphs", "imagefolder"):
        raise ConfigError(f"{where}: dataset.kind must be 'glyphs' or 'imagefolder', got {kind!r}")
    try:
        glyphs = GlyphConfig.from_dict(ds.get("glyphs") or {})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: dataset.glyphs: {exc}") from exc
    splits = {}
    if kind == "imagefolder":
        splits = ds.get("splits") or {}
        if not isinstance(splits, dict) or not {"train", "val"} <= set(splits) or set(splits) - set(SPLITS):
            raise ConfigError(f"{where}: dataset.splits must map train, val (and optionally ood) to folders, got {splits!r}")
        splits = {k: str((where.parent / v).resolve()) for k, v in splits.items()}
        if not ds.get("name"):
            raise ConfigError(f"{where}: dataset.name is required for kind 'imagefolder'")
    dataset = DatasetConfig(kind=kind, glyphs=glyphs, name=str(ds.get("name") or ""), splits=splits)

    raw_models = raw.get("models")
    if raw_models is None and "watch" in raw:
        raw_models = []  # the watched checkpoint folders are the models
    if not isinstance(raw_models, list) or not (raw_models or "watch" in raw):
        raise ConfigError(f"{where}: 'models' must be a non-empty list of model entries (or give 'watch' folders)")
    models = []
    for i, entry in enumerate(raw_models):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: models[{i}] must be a mapping, got {entry!r}")
        entry = dict(entry)
        if entry.get("checkpoint"):
            entry["checkpoint"] = str((where.parent / entry["checkpoint"]).resolve())
        try:
            spec = ModelSpec.from_dict(entry)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: models[{i}]: {exc}") from exc
        if kind == "imagefolder" and not (spec.checkpoint or spec.pretrained):
            raise ConfigError(f"{where}: models[{i}] ({spec.name}): training from scratch needs the glyph dataset; "
                              "give 'checkpoint' or 'pretrained: true' for an imagefolder dataset")
        models.append(spec)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: model names must be unique, got {names}")

    dep = _section(raw, "dependencies", where, set(DependencyConfig.__dataclass_fields__))
    if "lambdas" in dep:
        if not isinstance(dep["lambdas"], list):
            raise ConfigError(f"{where}: dependencies.lambdas must be a list, got {dep['lambdas']!r}")
        dep = {**dep, "lambdas": tuple(dep["lambdas"])}
    dependencies = DependencyConfig(**dep)
    dependencies.validate(str(where))
    device = str(raw.get("device", "auto"))
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise ConfigError(f"{where}: device must be auto, cpu, cuda or mps, got {device!r}")
    watch = raw.get("watch")
    if watch is not None:
        if isinstance(watch, str):
            watch = [watch]
        if not isinstance(watch, list) or not all(isinstance(w, str) and w for w in watch):
            raise ConfigError(f"{where}: watch must be a list of folders, got {watch!r}")
        watch = tuple(str((where.parent / w).resolve()) for w in watch)
    schedule = raw.get("schedule", DEFAULT_SCHEDULE)
    if not isinstance(schedule, str) or len(schedule.split()) != 5:
        raise ConfigError(f"{where}: schedule must be a 5-field cron string, got {schedule!r}")
    ex = _section(raw, "executor", where, set(ExecutorConfig.__dataclass_fields__))
    executor = ExecutorConfig(**ex)
    if executor.kind not in EXECUTORS:
        raise ConfigError(f"{where}: executor.kind must be one of {EXECUTORS}, got {executor.kind!r}")
    if isinstance(executor.n_workers, bool) or not isinstance(executor.n_workers, int) or executor.n_workers < 1:
        raise ConfigError(f"{where}: executor.n_workers must be an integer ≥ 1, got {executor.n_workers!r}")
    return ProjectConfig(path=where, dataset=dataset, models=tuple(models), dependencies=dependencies, device=device,
                         watch=watch, schedule=schedule, executor=executor)


def stable_json(obj: Any) -> str:
    """Canonical JSON (keys sorted; dataclasses as dicts): what gets hashed and stored as config."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, default=str)


def stable_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of `stable_json(obj)`: the content address of a config."""
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:n]
