"""The schema of `neudep.yaml`: every key, its type and its bounds, in one place (pydantic v2, strict).

`validate_project(raw, where)` checks a parsed config and raises `ConfigError` with one line per bad
value, each naming the file and the key path (``neudep.yaml: dataset.glyphs.val_per_class: must be
≥ 1 (got 0)``); an unknown key names the closest known one. Types are strict (``"4"`` is no integer,
``true`` no number), NaN and ±inf are refused everywhere. docs/configuration.md is written from these
classes (`scripts/config_doc.py`), and a test holds the two together.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from neudep_assets.lib.config_errors import ConfigError, check, plain_lists
from neudep_assets.lib.cron import cron_problem
from neudep_assets.lib.glyph_list import glyph_count

__all__ = ["ConfigError", "check", "plain_lists"]  # re-exported: the schema's users need them


SPLITS = ("train", "val", "ood")
AUGMENTS = ("none", "shift")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
LOGIT_GAUGES = ("raw", "centered")  # the first (the paper's raw logits) is the default
INCREMENTAL_SPLITS = {"90/10": 0.10, "95/5": 0.05, "all_but_one": None}  # the new share of the classes
BASE_OPTIONS = ("auto", "retrain", "truncate")
EXECUTORS = ("in_process", "multiprocess", "dask")
DEVICES = ("auto", "cpu", "cuda", "mps")
#: a dask scheduler address: host:port, optionally with a protocol (tcp://, tls://, ...)
SCHEDULER_RE = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss|inproc)://)?(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|"
                          r"\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$")

# a safe single path component: letters, digits, '_', '.', '-', not starting with '.' (no '..', no '/')
SafeName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
Count = Annotated[int, Field(ge=1)]
NonNeg = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class GlyphSchema(_Schema):
    """The embedded glyph dataset: characters drawn offline, one class per character."""

    n_classes: Annotated[int, Field(ge=2, description="classes (characters) of the dataset")] = 300
    n_ood_classes: Annotated[int, Field(ge=0, description="further characters, no class: the ood split")] = 100
    image_size: Annotated[int, Field(ge=8, le=256, description="pixels per side")] = 32
    train_per_class: Annotated[int, Field(ge=1, le=100_000, description="training images per class")] = 60
    val_per_class: Annotated[int, Field(ge=1, le=100_000, description="validation images per class (the metrics)")] = 20
    ood_per_class: Annotated[int, Field(ge=0, le=100_000, description="images per ood character")] = 5
    seed: Annotated[int, Field(ge=0, description="seed of the drawing")] = 0

    @model_validator(mode="after")
    def _fits_the_class_list(self):
        n = glyph_count()
        if self.n_classes + self.n_ood_classes > n:
            raise ValueError(f"n_classes + n_ood_classes = {self.n_classes + self.n_ood_classes} exceeds the {n} "
                             "characters of the shipped class list")
        return self


class DatasetSchema(_Schema):
    """The one dataset every model is analysed on."""

    kind: Annotated[Literal["glyphs", "imagefolder"],
                    Field(description="glyphs: the embedded default; imagefolder: your own images")] = "glyphs"
    glyphs: GlyphSchema = Field(default_factory=GlyphSchema, description="kind glyphs: its settings")
    name: Annotated[Optional[SafeName],
                    Field(description="kind imagefolder (required): the dataset's name, a folder name "
                                      "(letters, digits, '_', '.', '-')")] = None
    splits: Annotated[dict[Literal["train", "val", "ood"], NonEmpty],
                      Field(description="kind imagefolder: split -> folder of class subfolders (train and val "
                                        "required, ood optional), relative to the config file")] = {}

    @model_validator(mode="after")
    def _imagefolder_needs_name_and_splits(self):
        if self.kind == "imagefolder":
            if not self.name:
                raise ValueError("name: required for kind 'imagefolder'")
            if not {"train", "val"} <= set(self.splits):
                raise ValueError(f"splits: kind 'imagefolder' needs train and val folders, got {sorted(self.splits)}")
        return self


class TrainSchema(_Schema):
    """How a model of `arch` (no `pretrained`, no `checkpoint`) is trained from scratch."""

    epochs: Annotated[int, Field(ge=1, le=100_000, description="passes over the training split")] = 10
    lr: Annotated[float, Field(gt=0, le=10, description="peak learning rate (AdamW)")] = 2e-3
    batch_size: Annotated[int, Field(ge=1, le=1_000_000, description="images per step")] = 128
    weight_decay: Annotated[float, Field(ge=0, le=10, description="AdamW weight decay")] = 0.05
    seed: Annotated[int, Field(ge=0, description="seed of the initialization and the data order")] = 0
    label_smoothing: Annotated[float, Field(ge=0, lt=1, description="cross-entropy label smoothing")] = 0.1
    warmup_epochs: Annotated[float, Field(ge=0, description="linear warm-up, in epochs")] = 1.0
    min_lr_ratio: Annotated[float, Field(ge=0, lt=1, description="cosine floor, as a share of lr")] = 0.0
    grad_clip: Annotated[Optional[Positive], Field(description="gradient norm clip (null: none)")] = None
    augment: Annotated[Optional[Literal[AUGMENTS]], Field(description="none | shift")] = "none"
    eval_every: Annotated[int, Field(ge=1, description="epochs between validation passes")] = 1
    fresh_samples: Annotated[bool, Field(description="glyphs: new drawings each epoch")] = True
    mean_logit_penalty: Annotated[float, Field(ge=0, description="weight of E[m(x)²], m the mean logit")] = 0.0
    threads: Annotated[int, Field(ge=1, le=1024, description="torch threads while training (and for logits): "
                                  "the weights' last bits depend on the count, so it is part of the checkpoint")] = 1


class ModelSchema(_Schema):
    """One `models:` entry: `arch` (trained here, or `pretrained: true` hub weights) or `checkpoint`."""

    name: Annotated[SafeName, Field(description="the model's name: partition key and folder name")]
    arch: Annotated[Optional[NonEmpty], Field(description="timm architecture, optionally with a pretrained tag "
                                                          "(resnet10t.c3_in1k) or as hf-hub:owner/repo")] = None
    model_args: Annotated[dict[str, Any], Field(description="keyword arguments of timm.create_model")] = {}
    checkpoint: Annotated[Optional[NonEmpty], Field(description="a local timm checkpoint folder (config.json + "
                                                                "model.safetensors), relative to the config")] = None
    pretrained: Annotated[bool, Field(description="arch with hub weights, used as is (its own head)")] = False
    train: TrainSchema = Field(default_factory=TrainSchema, description="arch trained here: the recipe")
    logits_batch_size: Annotated[Optional[Count], Field(description="images per forward pass for the logits "
                                                                    "(null: fitted to input size and memory)")] = None


class DependencySchema(_Schema):
    """The CovLasso analyses: the λ grid and the splits it is fit and evaluated on."""

    lambdas: Annotated[list[NonNegFloat], Field(min_length=1, max_length=1000,
                       description="the λ grid, decreasing; relative mode: fractions of each target's λ_max in "
                                   "(0, 1]")] = [0.5, 0.2, 0.1, 0.05, 0.02]
    lambda_mode: Annotated[Literal["relative", "absolute"],
                           Field(description="relative: λ = fraction · λ_max; absolute: the paper's λ")] = \
        "relative"
    fit_split: Annotated[Literal[SPLITS], Field(description="C = E[f fᵀ] from this split")] = "train"
    eval_split: Annotated[Literal[SPLITS], Field(description="Table-1 metrics on this split")] = "val"
    tol: Annotated[float, Field(ge=1e-15, le=1e-2, description="CovLasso tolerance (relative KKT)")] = 1e-9
    star_plots: Annotated[int, Field(ge=0, le=1000, description="strongest targets pictured in the UI")] = 4
    target_chunk: Annotated[Optional[Count], Field(description="targets solved and certified at a time "
                                                               "(null: all at once)")] = None
    chunk_steps: Annotated[int, Field(ge=1, le=10_000, description="Dagster steps one analysis is spread "
                                                                   "over")] = 1
    logit_gauge: Annotated[Literal[LOGIT_GAUGES], Field(description="raw: the paper's logits; centered: each "
                                                        "sample's logits minus their mean over the classes")] = "raw"
    gauge_crosscheck: Annotated[bool, Field(description="also the other gauge, within-model, at the λ closest "
                                                        "to 0.1")] = True
    store_path: Annotated[bool, Field(description="keep each target's exact path (knots) in the store: "
                                                  "big")] = False

    @field_validator("lambdas")
    @classmethod
    def _grid(cls, lams: list[float]):
        dup = sorted({x for x in lams if lams.count(x) > 1})
        if dup:
            raise ValueError(f"has duplicates {dup}: each λ once")
        return lams

    @model_validator(mode="after")
    def _grid_order(self):
        lams = self.lambdas
        bad = [x for x in lams if not 0 < x <= 1]
        if self.lambda_mode == "relative" and bad:
            raise ValueError(f"lambdas: fractions of λ_max in relative mode must lie in (0, 1], got {bad}")
        if any(a <= b for a, b in zip(lams, lams[1:])):
            raise ValueError(f"lambdas: must be decreasing (the path runs from λ_max down), got {lams}")
        return self


class IncrementalSchema(_Schema):
    """§3.2, new categories from old logits: per model and split setting, a base model, heads, baselines."""

    models: Annotated[list[SafeName], Field(description="models (names under models) to study")] = []
    splits: Annotated[list[Literal[tuple(INCREMENTAL_SPLITS)]],
                      Field(min_length=1, description="base/new splits: 90/10, 95/5, all_but_one")] = \
        ["90/10", "all_but_one"]
    split_seed: Annotated[int, Field(ge=0, description="which classes are new")] = 0
    base: Annotated[Literal[BASE_OPTIONS], Field(description="auto | retrain | truncate")] = "auto"
    base_epochs: Annotated[int, Field(ge=0, description="0: the model's recipe; n: n epochs for the base and "
                                                        "an all-class baseline")] = 0
    seeds: Annotated[int, Field(ge=1, le=1000, description="seeds of the cheap heads")] = 3
    epochs: Annotated[int, Field(ge=1, le=100_000, description="epochs of each head")] = 10
    lr: Annotated[float, Field(gt=0, le=10, description="heads' learning rate")] = 0.01
    batch_size: Annotated[int, Field(ge=1, le=1_000_000, description="heads' batch size")] = 256
    l1: Annotated[float, Field(ge=0, description="ℓ1 weight on Θ")] = 0.0


class RegularizationSchema(_Schema):
    """§3.3, the dependency regularizer: fine-tunes with and without α·Σ|E_batch[f_i f_j]|."""

    models: Annotated[list[SafeName], Field(description="models (names under models) to fine-tune")] = []
    pairs: Annotated[list[Annotated[list[NonEmpty], Field(min_length=2, max_length=2)]],
                     Field(description="[[class, class], ...] to cut; empty: the n_pairs strongest")] = []
    n_pairs: Annotated[int, Field(ge=1, description="pairs chosen automatically")] = 1
    lambda_rel: Annotated[float, Field(gt=0, description="the λ (one of dependencies.lambdas) the pairs are "
                                                         "read at")] = 0.1
    logit_gauge: Annotated[Literal[LOGIT_GAUGES], Field(description="gauge of the analysis the pairs come "
                                                                    "from")] = "centered"
    alpha: Annotated[float, Field(ge=0, description="weight of the regularizer")] = 0.01
    seeds: Annotated[int, Field(ge=1, le=1000, description="fine-tune seeds")] = 1
    epochs: Annotated[int, Field(ge=1, le=100_000, description="fine-tune epochs")] = 1
    max_steps: Annotated[int, Field(ge=0, description="0: whole epochs; n: stop after n steps")] = 0
    lr: Annotated[float, Field(gt=0, le=10, description="fine-tune learning rate")] = 1e-4
    batch_size: Annotated[int, Field(ge=1, le=1_000_000, description="fine-tune batch size")] = 128

    @field_validator("pairs")
    @classmethod
    def _distinct(cls, pairs):
        for k, (a, b) in enumerate(pairs):
            if a == b:
                raise ValueError(f"[{k}] names the same class twice: {a!r}")
        return pairs


class ExecutorSchema(_Schema):
    """Where a run's steps execute."""

    kind: Annotated[Literal[EXECUTORS], Field(description="in_process | multiprocess | dask")] = "multiprocess"
    scheduler: Annotated[str, Field(description="dask: an existing scheduler's host:port (tcp://… allowed); "
                                                "empty: a local cluster")] = ""
    n_workers: Annotated[int, Field(ge=1, le=1024, description="dask: workers of a local cluster")] = 2

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str):
        m = SCHEDULER_RE.match(v)
        if v and not (m and 1 <= int(m.group(1)) <= 65535):
            raise ValueError(f"must be a dask scheduler address host:port (e.g. tcp://10.0.0.5:8786), got {v!r}")
        return v

    @model_validator(mode="after")
    def _only_dask(self):
        if self.scheduler and self.kind != "dask":
            raise ValueError(f"scheduler: only used with kind: dask (kind is {self.kind!r})")
        return self


class ProjectSchema(_Schema):
    """The top level of neudep.yaml."""

    dataset: DatasetSchema = Field(default_factory=DatasetSchema, description="the dataset")
    models: Annotated[Optional[list[ModelSchema]], Field(description="the models (may be omitted when watch "
                                                                     "is given)")] = None
    dependencies: DependencySchema = Field(default_factory=DependencySchema, description="the analyses")
    device: Annotated[Literal[DEVICES], Field(description="auto: cuda, then mps, then cpu")] = "auto"
    incremental: IncrementalSchema = Field(default_factory=IncrementalSchema, description="§3.2")
    regularization: RegularizationSchema = Field(default_factory=RegularizationSchema, description="§3.3")
    watch: Annotated[Optional[Union[NonEmpty, list[NonEmpty]]],
                     Field(description="checkpoint folders whose subfolders become models (null: "
                                       "<data root>/checkpoints/incoming)")] = None
    schedule: Annotated[str, Field(description="5-field cron (UTC) of the rerun of what is stale")] = "0 4 * * 1"
    executor: ExecutorSchema = Field(default_factory=ExecutorSchema, description="where steps run")
    store: Annotated[Optional[NonEmpty], Field(description="the result store's root: a path (relative to the "
                                                           "config) or an fsspec URL; null: the data root")] = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str):
        problem = cron_problem(v)
        if problem:
            raise ValueError(f"not a cron string ({problem}): five fields 'minute hour day month weekday', "
                             f"e.g. '0 4 * * 1', got {v!r}")
        return v

    @model_validator(mode="after")
    def _across_sections(self):
        models = self.models or []
        if not models and "watch" not in self.model_fields_set:
            raise ValueError("models: a non-empty list of model entries is needed (or give 'watch' folders)")
        names = [m.name for m in models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"models: model names must be unique, {dup} repeated")
        for sec in ("incremental", "regularization"):
            for m in getattr(self, sec).models:
                if m not in names:
                    raise ValueError(f"{sec}.models: no model named {m!r} under 'models' (known: "
                                     f"{', '.join(names) or 'none'})")
        reg, lams = self.regularization, self.dependencies.lambdas
        if reg.models and not any(abs(reg.lambda_rel - x) < 1e-12 for x in lams):
            raise ValueError(f"regularization.lambda_rel = {reg.lambda_rel} is not on dependencies.lambdas {lams}: "
                             "the coefficients are read from the analyses at that λ")
        for parent in reg.models:
            for seed in range(reg.seeds):
                for role in ("ctl", "reg"):
                    if f"{parent}.{role}{seed}" in names:
                        raise ValueError(f"models: name {parent}.{role}{seed!r} is taken by a fine-tune of "
                                         f"{parent!r} (regularization.models); rename the model")
        if self.dataset.kind == "imagefolder":
            for i, m in enumerate(models):
                if not (m.checkpoint or m.pretrained):
                    raise ValueError(f"models[{i}] ({m.name}): training from scratch needs the glyph dataset; give "
                                     "'checkpoint' or 'pretrained: true' for an imagefolder dataset")
        if self.incremental.models and self.dataset.kind == "glyphs":
            for setting in self.incremental.splits:
                split_problem(self.dataset.glyphs.n_classes, setting)
        return self


def split_problem(n_classes: int, setting: str) -> tuple[int, int]:
    """(base, new) class counts of a §3.2 split setting; ValueError naming `incremental.splits` if a side is empty."""
    frac = INCREMENTAL_SPLITS[setting]
    n_new = 1 if frac is None else int(round(frac * n_classes))
    if n_new < 1 or n_new >= n_classes:
        raise ValueError(f"incremental.splits: split {setting!r} of {n_classes} classes leaves "
                         f"{'no new' if n_new < 1 else 'no base'} class; use more classes or another split")
    return n_classes - n_new, n_new
