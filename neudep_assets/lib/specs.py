"""Pure-data specs of the project config: a model (``models:`` entries), its training settings, the
glyph dataset. No torch here: validating a config never loads the science."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: The shipped glyph class list (code points and the faces each renders in), made offline by
#: scripts/make_glyph_classes.py.
GLYPH_CLASSES_FILE = Path(__file__).resolve().parent / "data" / "glyph_classes.json"

_SPEC_KEYS = ("name", "arch", "model_args", "checkpoint", "pretrained", "train", "logits_batch_size")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# keys the dataset decides; a spec must not set them
_RESERVED_MODEL_ARGS = ("num_classes", "in_chans", "pretrained", "pretrained_cfg", "checkpoint_path")


# every key a spec's ``train:`` block may hold, with its default
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "lr": 2e-3,
    "batch_size": 128,
    "weight_decay": 0.05,
    "seed": 0,
    "label_smoothing": 0.1,
    "warmup_epochs": 1.0,
    "min_lr_ratio": 0.0,
    "grad_clip": None,
    "augment": "none",
    "eval_every": 1,
    "fresh_samples": True,
    "mean_logit_penalty": 0.0,
    "threads": 1,  # torch threads while training: the weights' last bits depend on it (lib/models/threads.py)
}
AUGMENTS = ("none", "shift")

_INT_KEYS = ("epochs", "batch_size", "seed", "eval_every", "threads")
_FLOAT_KEYS = ("lr", "weight_decay", "label_smoothing", "warmup_epochs", "min_lr_ratio", "grad_clip",
               "mean_logit_penalty")


def validate_train_config(train: Mapping[str, Any], *, where: str = "train") -> dict:
    """Check a ``train:`` block (unknown keys, types, ranges); returns it as a plain dict."""
    out: dict[str, Any] = {}
    unknown = sorted(str(k) for k in train if k not in TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(
            f"{where}: unknown train setting(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(TRAIN_DEFAULTS)}"
        )
    for k, v in train.items():
        if k in _INT_KEYS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{where}: train.{k} must be an integer, got {v!r}")
            v = int(v)
            if k != "seed" and v < 1:
                raise ValueError(f"{where}: train.{k} must be >= 1, got {v}")
        elif k in _FLOAT_KEYS:
            if v is None and k == "grad_clip":
                out[k] = None
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: train.{k} must be a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v) or v < 0 or (k in ("lr", "grad_clip") and v == 0):
                raise ValueError(f"{where}: train.{k} out of range: {v}")
            if k in ("label_smoothing", "min_lr_ratio") and v >= 1:
                raise ValueError(f"{where}: train.{k} must be < 1, got {v}")
        elif k == "fresh_samples":
            if not isinstance(v, bool):
                raise ValueError(f"{where}: train.fresh_samples must be true or false, got {v!r}")
        elif k == "augment":
            if v is None:
                v = "none"
            if v not in AUGMENTS:
                raise ValueError(f"{where}: train.augment must be one of {AUGMENTS}, got {v!r}")
        out[k] = v
    return out


def resolve_train_config(train: Mapping[str, Any] | None) -> dict:
    """Defaults overlaid with a validated ``train:`` block: the kwargs for :func:`train_classifier`."""
    return {**TRAIN_DEFAULTS, **validate_train_config(train or {})}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the project config (``models:`` list of ``neudep.yaml``).

    Exactly one origin: ``arch`` (a timm architecture trained from scratch, or with
    ``pretrained: true`` a hub model loaded as is) or ``checkpoint`` (a local timm checkpoint folder
    used as is).
    """

    name: str
    arch: str | None = None
    model_args: dict = field(default_factory=dict)
    checkpoint: str | None = None
    pretrained: bool = False
    train: dict = field(default_factory=dict)
    logits_batch_size: int | None = None  # images per forward pass for logits (None: fit to input size and memory)

    @property
    def trains(self) -> bool:
        """True when the pipeline trains this model itself (from scratch)."""
        return self.arch is not None and not self.pretrained and self.checkpoint is None

    @property
    def seed(self) -> int:
        return int(self.train.get("seed", 0))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "arch": self.arch,
            "model_args": dict(self.model_args),
            "checkpoint": self.checkpoint,
            "pretrained": self.pretrained,
            "train": dict(self.train),
            "logits_batch_size": self.logits_batch_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        """Validate one config entry; ``ValueError`` naming the bad key or value."""
        if not isinstance(d, Mapping):
            raise ValueError(f"model spec must be a mapping, got {type(d).__name__}: {d!r}")
        label = d.get("name", "<unnamed>")
        unknown = sorted(str(k) for k in d if k not in _SPEC_KEYS)
        if unknown:
            raise ValueError(
                f"model spec {label!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed keys: {', '.join(_SPEC_KEYS)}"
            )
        name = d.get("name")
        if name is None or name == "":
            raise ValueError(f"model spec is missing 'name': {dict(d)!r}")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"model spec: invalid name {name!r} (letters, digits, '_', '.', '-'; "
                "it is the partition key and a folder name)"
            )
        arch = d.get("arch")
        if arch is not None and (not isinstance(arch, str) or not arch.strip()):
            raise ValueError(f"model spec {name!r}: 'arch' must be a non-empty string, got {arch!r}")
        checkpoint = d.get("checkpoint")
        if checkpoint is not None:
            if not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint).strip():
                raise ValueError(f"model spec {name!r}: 'checkpoint' must be a folder path, got {checkpoint!r}")
            checkpoint = str(checkpoint)
        pretrained = d.get("pretrained", False)
        if not isinstance(pretrained, bool):
            raise ValueError(f"model spec {name!r}: 'pretrained' must be true or false, got {pretrained!r}")
        if checkpoint is not None and pretrained:
            raise ValueError(
                f"model spec {name!r}: give either 'checkpoint' (a local folder used as is) or "
                "'pretrained: true' (hub weights), not both"
            )
        if checkpoint is not None and arch is not None:
            raise ValueError(
                f"model spec {name!r}: give either 'checkpoint' or 'arch', not both "
                "(a checkpoint folder's config.json names its architecture)"
            )
        if checkpoint is None and arch is None:
            raise ValueError(f"model spec {name!r}: needs 'arch' (timm architecture) or 'checkpoint' (folder)")
        if arch is not None and arch.startswith("local-dir:"):
            raise ValueError(
                f"model spec {name!r}: arch {arch!r} is a local folder; use 'checkpoint: {arch[10:]}' instead"
            )
        model_args = d.get("model_args") or {}
        if not isinstance(model_args, Mapping):
            raise ValueError(f"model spec {name!r}: 'model_args' must be a mapping, got {model_args!r}")
        if checkpoint is not None and model_args:
            raise ValueError(f"model spec {name!r}: 'model_args' cannot be used with 'checkpoint'")
        for k in model_args:
            if not isinstance(k, str):
                raise ValueError(f"model spec {name!r}: model_args key {k!r} is not a string")
            if k in _RESERVED_MODEL_ARGS:
                raise ValueError(
                    f"model spec {name!r}: model_args must not set {k!r} (the dataset decides it)"
                )
        train = d.get("train") or {}
        if not isinstance(train, Mapping):
            raise ValueError(f"model spec {name!r}: 'train' must be a mapping, got {train!r}")
        train = validate_train_config(dict(train), where=f"model spec {name!r}")
        if train and not (arch is not None and not pretrained):
            # seed is harmless (used e.g. by fine-tunes); the rest only matters when training
            extra = sorted(set(train) - {"seed"})
            if extra:
                raise ValueError(
                    f"model spec {name!r}: 'train' settings {extra} only apply to models trained from "
                    "scratch (arch without pretrained/checkpoint)"
                )
        lbs = d.get("logits_batch_size")
        if lbs is not None and (isinstance(lbs, bool) or not isinstance(lbs, int) or lbs < 1):
            raise ValueError(f"model spec {name!r}: 'logits_batch_size' must be a positive integer, got {lbs!r}")
        return cls(
            name=name,
            arch=arch.strip() if arch is not None else None,
            model_args=plain(dict(model_args)),
            checkpoint=checkpoint,
            pretrained=pretrained,
            train=train,
            logits_batch_size=lbs,
        )


def plain(obj):
    """Lists for tuples, recursively, so that specs round-trip through JSON/YAML unchanged."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class GlyphConfig:
    n_classes: int = 300
    n_ood_classes: int = 100
    image_size: int = 32
    train_per_class: int = 60
    val_per_class: int = 20
    ood_per_class: int = 5
    seed: int = 0

    def __post_init__(self):
        _MIN = {"n_classes": 1, "n_ood_classes": 0, "image_size": 8, "train_per_class": 0,
                "val_per_class": 0, "ood_per_class": 0, "seed": 0}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"GlyphConfig.{f.name} must be an int, got {v!r}")
            if v < _MIN[f.name]:
                raise ValueError(f"GlyphConfig.{f.name} must be >= {_MIN[f.name]}, got {v!r}")
            object.__setattr__(self, f.name, int(v))
        if self.image_size > 256:
            raise ValueError(f"GlyphConfig.image_size must be <= 256, got {self.image_size}")
        n_avail = len(json.loads(shipped_glyph_list())["classes"])
        if self.n_classes + self.n_ood_classes > n_avail:
            raise ValueError(
                f"GlyphConfig: n_classes + n_ood_classes = {self.n_classes + self.n_ood_classes} "
                f"exceeds the {n_avail} characters in {GLYPH_CLASSES_FILE.name}")

    @classmethod
    def from_dict(cls, d: dict) -> "GlyphConfig":
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ValueError(f"glyph config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"unknown glyph config key {k!r} (known: {sorted(known)})")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)




@functools.lru_cache(maxsize=1)
def shipped_glyph_list() -> bytes:
    """The raw bytes of the shipped glyph class list (also hashed into the dataset id)."""
    try:
        return GLYPH_CLASSES_FILE.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"glyph class list {GLYPH_CLASSES_FILE} is missing; run "
                                f"scripts/make_glyph_classes.py") from e
