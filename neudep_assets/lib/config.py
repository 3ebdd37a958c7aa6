"""The project config (`neudep.yaml`) and the data root, with errors that name the file and key.

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
    chunk_steps: int = 1  # Dagster steps the targets of one analysis are spread over (each merged into one commit)
    # raw: the paper's logits (Remark 1); centered: each sample's logits minus their mean over the classes
    logit_gauge: str = "raw"
    gauge_crosscheck: bool = True  # also analyse the other gauge, within-model, at the λ closest to 0.1
    store_path: bool = False  # keep each target's exact path (knots, λ_max → smallest λ) in the store: big (README)

    def validate(self, where: str) -> None:
        if self.logit_gauge not in LOGIT_GAUGES:
            raise ConfigError(f"{where}: dependencies.logit_gauge must be one of {', '.join(LOGIT_GAUGES)}, "
                              f"got {self.logit_gauge!r}")
        if not isinstance(self.store_path, bool):
            raise ConfigError(f"{where}: dependencies.store_path must be true or false, got {self.store_path!r}")
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
        cs = self.chunk_steps
        if isinstance(cs, bool) or not isinstance(cs, int) or cs < 1:
            raise ConfigError(f"{where}: dependencies.chunk_steps must be a positive integer (steps per analysis), "
                              f"got {cs!r}")
        for key in ("fit_split", "eval_split"):
            if getattr(self, key) not in SPLITS:
                raise ConfigError(f"{where}: dependencies.{key} must be one of {SPLITS}, got {getattr(self, key)!r}")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1e-2):
            raise ConfigError(f"{where}: dependencies.tol must be a small positive number, got {self.tol!r}")


#: base/new splits of §3.2: the new share of the classes (``all_but_one``: exactly one new class)
INCREMENTAL_SPLITS = {"90/10": 0.10, "95/5": 0.05, "all_but_one": None}
BASE_OPTIONS = ("auto", "retrain", "truncate")


def split_sizes(n_classes: int, setting: str, where: str = "") -> tuple[int, int]:
    """(base, new) class counts of a §3.2 split setting; refused naming `incremental.splits` when a side is empty."""
    frac = INCREMENTAL_SPLITS[setting]
    n_new = 1 if frac is None else int(round(frac * n_classes))
    if n_new < 1 or n_new >= n_classes:
        raise ConfigError(f"{where + ': ' if where else ''}incremental.splits: split {setting!r} of {n_classes} classes "
                          f"leaves {'no new' if n_new < 1 else 'no base'} class; use more classes or another split")
    return n_classes - n_new, n_new


def _check_number(where: str, key: str, value, *, lo: float, lo_open: bool = False, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < lo or (lo_open and value == lo):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: {key} must be {kind} {'>' if lo_open else '≥'} {lo:g}, got {value!r}")


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
        w = f"{where}: incremental"
        for m in self.models:
            if model_names and m not in model_names:
                raise ConfigError(f"{w}.models: no model named {m!r} under 'models' (known: {', '.join(model_names)})")
        if not self.splits:
            raise ConfigError(f"{w}.splits must name at least one of {sorted(INCREMENTAL_SPLITS)}")
        for s in self.splits:
            if s not in INCREMENTAL_SPLITS:
                raise ConfigError(f"{w}.splits: unknown split {s!r} (known: {sorted(INCREMENTAL_SPLITS)})")
        if self.base not in BASE_OPTIONS:
            raise ConfigError(f"{w}.base must be one of {BASE_OPTIONS}, got {self.base!r}")
        _check_number(w, "split_seed", self.split_seed, lo=0, integer=True)
        _check_number(w, "base_epochs", self.base_epochs, lo=0, integer=True)
        for key in ("seeds", "epochs", "batch_size"):
            _check_number(w, key, getattr(self, key), lo=1, integer=True)
        _check_number(w, "lr", self.lr, lo=0, lo_open=True)
        _check_number(w, "l1", self.l1, lo=0)


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
        w = f"{where}: regularization"
        for m in self.models:
            if model_names and m not in model_names:
                raise ConfigError(f"{w}.models: no model named {m!r} under 'models' (known: {', '.join(model_names)})")
        for k, pair in enumerate(self.pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(c, str) and c for c in pair)):
                raise ConfigError(f"{w}.pairs[{k}] must be two class names, got {pair!r}")
            if pair[0] == pair[1]:
                raise ConfigError(f"{w}.pairs[{k}] names the same class twice: {pair[0]!r}")
        _check_number(w, "alpha", self.alpha, lo=0)
        _check_number(w, "lambda_rel", self.lambda_rel, lo=0, lo_open=True)
        if lambdas and not any(abs(self.lambda_rel - x) < 1e-12 for x in lambdas):
            raise ConfigError(f"{w}.lambda_rel = {self.lambda_rel} is not on dependencies.lambdas {list(lambdas)}: "
                              "the coefficients are read from the analyses at that λ")
        if self.logit_gauge not in LOGIT_GAUGES:
            raise ConfigError(f"{w}.logit_gauge must be one of {LOGIT_GAUGES}, got {self.logit_gauge!r}")
        for key in ("n_pairs", "seeds", "epochs", "batch_size"):
            _check_number(w, key, getattr(self, key), lo=1, integer=True)
        _check_number(w, "max_steps", self.max_steps, lo=0, integer=True)
        _check_number(w, "lr", self.lr, lo=0, lo_open=True)

    def children(self, parent: str) -> list[tuple[str, str, int]]:
        """(child model name, role, seed) of each fine-tune of ``parent``: control and regularized per seed."""
        return [(f"{parent}.{role}{seed}", role, seed) for seed in range(self.seeds) for role in ("ctl", "reg")]


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
        raise ConfigError(f"{where}: store must be a local path or an fsspec URL (s3://bucket/prefix…), got {value!r}")
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
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        value = _store_value(raw.get("store"), path) if isinstance(raw, dict) else None
        if value:
            return value, f"{path}: store"
    return str(Path(root).resolve() if root else data_root()), "the data root (NEUDEP_DATA)"


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
    unknown = set(raw) - {"dataset", "models", "dependencies", "device", "incremental", "regularization", "watch",
                          "schedule", "executor", "store"}
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
    incremental = _uses_section(raw, "incremental", IncrementalConfig, where)
    incremental.validate(str(where), tuple(names))
    if incremental.models and kind == "glyphs":
        for setting in incremental.splits:
            split_sizes(glyphs.n_classes, setting, str(where))
    regularization = _uses_section(raw, "regularization", RegularizationConfig, where)
    regularization.validate(str(where), tuple(names), tuple(dependencies.lambdas))
    taken = set(names)
    for parent in regularization.models:
        for child, _, _ in regularization.children(parent):
            if child in taken:
                raise ConfigError(f"{where}: model name {child!r} is taken by a fine-tune of {parent!r} "
                                  "(regularization.models); rename the model")
    return ProjectConfig(path=where, dataset=dataset, models=tuple(models), dependencies=dependencies, device=device,
                         incremental=incremental, regularization=regularization, watch=watch, schedule=schedule,
                         executor=executor, store=_store_value(raw.get("store"), where))



def _uses_section(raw: dict, key: str, cls, where: Path):
    """An `incremental:` / `regularization:` section: known keys only, lists as tuples."""
    sec = _section(raw, key, where, set(cls.__dataclass_fields__))
    out = {}
    for k, v in sec.items():
        if k in ("models", "splits", "pairs"):
            if not isinstance(v, list):
                raise ConfigError(f"{where}: {key}.{k} must be a list, got {v!r}")
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        out[k] = v
    return cls(**out)


def stable_json(obj: Any) -> str:
    """Canonical JSON (keys sorted; dataclasses as dicts): what gets hashed and stored as config."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, default=str)


def stable_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of `stable_json(obj)`: the content address of a config."""
    return hashlib.sha256(stable_json(obj).encode()).hexdigest()[:n]
