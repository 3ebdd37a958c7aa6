"""Pure-data specs of the project config: a model (``models:`` entries), its training settings, the
glyph dataset. No torch here: validating a config never loads the science."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from neudep_assets.lib.config_schema import AUGMENTS, NAME_PATTERN, GlyphSchema, TrainSchema, check, plain_lists
from neudep_assets.lib.glyph_list import GLYPH_CLASSES_FILE, shipped_glyph_list

__all__ = ["AUGMENTS", "GLYPH_CLASSES_FILE", "TRAIN_DEFAULTS", "GlyphConfig", "ModelSpec", "plain",
           "resolve_train_config", "shipped_glyph_list", "validate_train_config"]

_SPEC_KEYS = ("name", "arch", "model_args", "checkpoint", "pretrained", "train", "logits_batch_size")
_NAME_RE = re.compile(NAME_PATTERN)
# keys the dataset decides; a spec must not set them
_RESERVED_MODEL_ARGS = ("num_classes", "in_chans", "pretrained", "pretrained_cfg", "checkpoint_path")


# every key a spec's ``train:`` block may hold, with its default (types and bounds: config_schema.TrainSchema)
TRAIN_DEFAULTS: dict[str, Any] = {k: f.default for k, f in TrainSchema.model_fields.items()}


def validate_train_config(train: Mapping[str, Any], *, where: str = "train") -> dict:
    """Check a ``train:`` block against the schema (unknown keys, types, ranges); returns it as a plain dict."""
    valid = check(TrainSchema, plain_lists(dict(train)), where, prefix="train").model_dump()
    return {k: ("none" if k == "augment" and valid[k] is None else valid[k]) for k in train}  # the order kept: hashed


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
        if arch is not None and "/" in arch and not arch.lower().startswith(("hf-hub:", "hf_hub:", "local-dir:")):
            raise ValueError(
                f"model spec {name!r}: arch {arch!r} looks like a Hugging Face repo id; write 'hf-hub:{arch}' "
                "(timm refuses a repo id without its source)"
            )
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
        check(GlyphSchema, dataclasses.asdict(self), "GlyphConfig")

    @classmethod
    def from_dict(cls, d: dict) -> "GlyphConfig":
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ValueError(f"glyph config must be a mapping, got {type(d).__name__}")
        check(GlyphSchema, d, "glyph config")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
