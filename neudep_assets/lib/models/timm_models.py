"""timm models for neudep: specs, creation, and checkpoint I/O in timm's folder format.

A checkpoint is a folder holding ``config.json`` and ``model.safetensors``, as written by
``timm.models.save_for_hf(..., safe_serialization=True)`` and read by
``timm.create_model("local-dir:PATH")``. Weights are only ever read with safetensors: a folder that
holds only a pickle (``pytorch_model.bin``, ``*.pth``) is rejected, never unpickled.

The preprocessing a model expects (input size, mean, std) lives in its ``pretrained_cfg`` and so in
``config.json``; :func:`model_data_config` reads it back the way timm does.

torch and timm are imported inside the functions that need them (Dagster re-imports code locations).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".ckpt", ".tar")

_SPEC_KEYS = ("name", "arch", "model_args", "checkpoint", "pretrained", "train")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# keys the dataset decides; a spec must not set them
_RESERVED_MODEL_ARGS = ("num_classes", "in_chans", "pretrained", "pretrained_cfg", "checkpoint_path")


class CheckpointError(ValueError):
    """A checkpoint folder (or a model to build) is missing, malformed or does not fit; names the path."""


class PretrainedWeightsUnavailable(CheckpointError):
    """Hub weights were asked for but cannot be had (offline, or the hub is unreachable)."""


# ---------------------------------------------------------------------------------------------- spec


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
        from .training import validate_train_config  # no torch import there at module level

        train = validate_train_config(dict(train), where=f"model spec {name!r}")
        if train and not (arch is not None and not pretrained):
            # seed is harmless (used e.g. by fine-tunes); the rest only matters when training
            extra = sorted(set(train) - {"seed"})
            if extra:
                raise ValueError(
                    f"model spec {name!r}: 'train' settings {extra} only apply to models trained from "
                    "scratch (arch without pretrained/checkpoint)"
                )
        return cls(
            name=name,
            arch=arch.strip() if arch is not None else None,
            model_args=_plain(dict(model_args)),
            checkpoint=checkpoint,
            pretrained=pretrained,
            train=train,
        )


def _plain(obj):
    """Lists for tuples, recursively, so that specs round-trip through JSON/YAML unchanged."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _timm_kwargs(model_args: Mapping) -> dict:
    """Config lists -> tuples (timm signatures annotate tuples; lists would also work mostly)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in model_args.items()}


# ------------------------------------------------------------------------------------------ create


def _check_arch(arch: str) -> None:
    import timm
    from timm.models import parse_model_name, split_model_name_tag

    try:
        source, model_id = parse_model_name(arch)
    except ValueError as e:
        raise ValueError(f"unknown timm architecture {arch!r}: {e}") from None
    if source is not None:
        return  # hf-hub:...: checked when loading
    base, _tag = split_model_name_tag(model_id)
    if not timm.is_model(base):
        raise ValueError(
            f"unknown timm architecture {arch!r} (not in timm {timm.__version__}'s registry; "
            "see timm.list_models())"
        )


def create_model(
    spec: ModelSpec,
    num_classes: int,
    in_chans: int,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    img_size: int | None = None,
):
    """Build the model of ``spec``: untrained (seeded by ``spec.train['seed']``) or hub-pretrained.

    A ``checkpoint`` spec is loaded with :func:`load_checkpoint` instead. ``mean``/``std`` (the
    normalization the model is trained with) and ``img_size`` are written into the model's
    ``pretrained_cfg`` so that they are saved in ``config.json``; a from-scratch architecture that
    takes ``img_size`` (ViT, ...) is built for that size. Hub weights keep their input size.
    """
    if spec.checkpoint is not None:
        return load_checkpoint(Path(spec.checkpoint), expected_num_classes=num_classes)
    if spec.arch is None:
        raise ValueError(f"model spec {spec.name!r} has neither arch nor checkpoint")
    import timm
    import torch

    _check_arch(spec.arch)
    kwargs = _timm_kwargs(spec.model_args)
    if spec.pretrained:
        # hub weights keep their own input size unless model_args resize the model
        overlay = _pretrained_cfg_overlay(in_chans, mean, std, kwargs.get("img_size"), from_scratch=False)
        try:
            model = timm.create_model(
                spec.arch, pretrained=True, num_classes=num_classes, in_chans=in_chans,
                pretrained_cfg_overlay=overlay or None, **kwargs,
            )
        except (TypeError, ValueError) as e:
            if _looks_offline(e):
                raise _offline_error(spec.arch, e) from e
            raise ValueError(f"cannot build {spec.arch!r} with model_args {spec.model_args!r}: {e}") from e
        except Exception as e:  # download / hub failures come in many types
            raise _offline_error(spec.arch, e) from e
        return model.eval()
    overlay = _pretrained_cfg_overlay(in_chans, mean, std, img_size or kwargs.get("img_size"), from_scratch=True)
    size_kw = {}
    if img_size is not None and "img_size" not in kwargs:
        size_kw["img_size"] = img_size  # fixed-size archs (ViT, ...) take it; the others refuse it
    with torch.random.fork_rng(devices=[]):
        try:
            try:
                torch.manual_seed(spec.seed)
                model = timm.create_model(
                    spec.arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                    pretrained_cfg_overlay=overlay, **size_kw, **kwargs,
                )
            except TypeError as e:
                if not size_kw or "img_size" not in str(e):
                    raise
                torch.manual_seed(spec.seed)
                model = timm.create_model(
                    spec.arch, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                    pretrained_cfg_overlay=overlay, **kwargs,
                )
        except (TypeError, ValueError, AssertionError) as e:
            raise ValueError(
                f"cannot build timm architecture {spec.arch!r} with model_args {spec.model_args!r}: {e}"
            ) from e
    return model


def _pretrained_cfg_overlay(in_chans, mean, std, img_size, *, from_scratch: bool) -> dict:
    overlay: dict[str, Any] = {}
    if from_scratch:
        # a model trained here has no hub origin: drop the hub/weights metadata of the registry cfg
        overlay.update(tag=None, url=None, hf_hub_id=None, hf_hub_filename=None, license=None,
                       origin_url=None, paper_ids=None, paper_name=None, notes=None,
                       test_input_size=None, test_crop_pct=None, pool_size=None,
                       crop_pct=1.0, interpolation="bilinear")
    if mean is not None:
        overlay["mean"] = _per_channel(mean, in_chans, "mean")
    if std is not None:
        overlay["std"] = _per_channel(std, in_chans, "std")
    if img_size is not None:
        s = tuple(img_size) if isinstance(img_size, (list, tuple)) else (int(img_size), int(img_size))
        overlay["input_size"] = (in_chans, *s)
        overlay["crop_pct"] = 1.0
    return overlay


def _per_channel(v, in_chans: int, what: str) -> tuple:
    v = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
    if len(v) == in_chans:
        return v
    if len(v) == 1:
        return v * in_chans
    if in_chans == 1:
        return (sum(v) / len(v),)
    raise ValueError(f"{what} has {len(v)} values but the model takes {in_chans} channels")


def _looks_offline(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(s in text for s in ("offline", "connection", "resolve", "network", "hub", "download"))


def _offline_error(arch: str, e: BaseException) -> PretrainedWeightsUnavailable:
    return PretrainedWeightsUnavailable(
        f"pretrained weights for {arch!r} cannot be downloaded ({type(e).__name__}: {e}). "
        "Without internet (or with HF_HUB_OFFLINE=1) only weights already in the Hugging Face cache load. "
        "Save the model as a local timm checkpoint folder (config.json + model.safetensors, "
        "timm.models.save_for_hf(model, PATH, safe_serialization=True)) on a machine that has the "
        "weights, and list it in the config as `checkpoint: PATH` instead of `pretrained: true`."
    )


# -------------------------------------------------------------------------------------- inspection


def num_features(model) -> int:
    """Width d of the penultimate features (the input of the classifier head)."""
    n = getattr(model, "num_features", None)
    if n is None:
        head = model.get_classifier()
        n = head.in_features
    return int(n)


def num_classes_of(model) -> int:
    n = getattr(model, "num_classes", None)
    if n is None:
        n = model.get_classifier().out_features
    return int(n)


def model_data_config(model) -> dict:
    """timm's data config of ``model`` (input_size, mean, std, crop_pct, interpolation)."""
    from timm.data import resolve_model_data_config

    cfg = dict(resolve_model_data_config(model))
    in_chans = model_in_chans(model)
    size = tuple(cfg.get("input_size", (in_chans, 224, 224)))
    cfg["input_size"] = (in_chans, *size[1:])
    cfg["mean"] = _per_channel(cfg["mean"], in_chans, "mean")
    cfg["std"] = _per_channel(cfg["std"], in_chans, "std")
    return cfg


def model_in_chans(model) -> int:
    n = getattr(model, "in_chans", None)
    if n is not None:
        return int(n)
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels * m.groups)
    size = getattr(model, "pretrained_cfg", {}).get("input_size")
    return int(size[0]) if size else 3


# --------------------------------------------------------------------------------------- save/load


def save_checkpoint(model, folder: Path, *, model_args: Mapping | None, extra: Mapping | None = None) -> str:
    """Write ``model`` as a timm checkpoint folder (safetensors only), atomically; return its sha256.

    The folder is built under a temporary name beside ``folder`` and renamed into place, so a reader
    never sees a half-written checkpoint. ``model_args`` are the reconstruction kwargs (as in the
    spec). ``extra``: keys ending in ``.json`` are written as side files of that name in the folder
    (e.g. ``{"neudep_training.json": {...}}``), ``label_names`` goes to timm's own top-level field of
    config.json, and any other key is stored in config.json under ``"neudep"``.
    """
    import timm.models

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    model_config: dict[str, Any] = {}
    side_files: dict[str, Any] = {}
    if extra:
        extra = _plain(dict(extra))
        for key in [k for k in extra if k.endswith(".json")]:
            if "/" in key or "\\" in key or key in (CONFIG_NAME,) or key.startswith("."):
                raise ValueError(f"extra file name {key!r} is not allowed in a checkpoint folder")
            side_files[key] = extra.pop(key)
        labels = extra.pop("label_names", None)
        if labels:
            model_config["label_names"] = list(labels)
        if extra:
            model_config["neudep"] = extra
    was_training = model.training
    model.eval()
    try:
        timm.models.save_for_hf(
            model, str(tmp), model_config=model_config,
            model_args=_timm_kwargs(model_args or {}), safe_serialization=True,
        )
        for fname, content in side_files.items():
            (tmp / fname).write_text(json.dumps(content, indent=2, sort_keys=True), encoding="utf-8")
        leftovers = [p.name for p in tmp.iterdir()
                     if p.name not in (CONFIG_NAME, WEIGHTS_NAME, *side_files)]
        if leftovers or not (tmp / WEIGHTS_NAME).is_file():
            raise CheckpointError(f"unexpected files written to {tmp}: {leftovers}")
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    return weights_sha256(folder)


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def weights_sha256(folder: Path) -> str:
    """sha256 (hex) of ``folder/model.safetensors``: the checkpoint's data version."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"no {WEIGHTS_NAME} in checkpoint folder {Path(folder)}")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint_config(folder: Path) -> dict:
    """Parsed ``config.json`` of a checkpoint folder, validated enough to build the model."""
    folder = Path(folder)
    if not folder.exists():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} is not a folder (expected config.json + {WEIGHTS_NAME})")
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"checkpoint folder {folder} has no {CONFIG_NAME} (missing file {cfg_path})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot parse {cfg_path}: {e}") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object, got {type(cfg).__name__}")
    arch = cfg.get("architecture") or (cfg.get("pretrained_cfg") or {}).get("architecture")
    if not isinstance(arch, str) or not arch:
        raise CheckpointError(f"{cfg_path} names no 'architecture'")
    return cfg


def checkpoint_num_classes(cfg: Mapping) -> int | None:
    n = cfg.get("num_classes")
    if n is None:
        n = (cfg.get("model_args") or {}).get("num_classes")
    if n is None:
        n = (cfg.get("pretrained_cfg") or {}).get("num_classes")
    return int(n) if n is not None else None


def load_checkpoint(folder: Path, *, expected_num_classes: int | None = None, map_location="cpu"):
    """Load a timm checkpoint folder (config.json + model.safetensors) and return the model in eval mode.

    The architecture and its kwargs come from config.json through timm's ``local-dir:`` parser; the
    weights are read with safetensors only (pickles are never loaded) and must match exactly.
    """
    import timm

    folder = Path(folder)
    cfg = read_checkpoint_config(folder)
    cfg_path = folder / CONFIG_NAME
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        others = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = (f" (found {', '.join(others)}: pickle files are never loaded; re-save the weights with "
                "timm.models.save_for_hf(model, PATH, safe_serialization=True))") if others else ""
        raise CheckpointError(f"checkpoint folder {folder} has no {WEIGHTS_NAME}{hint}")
    n_cfg = checkpoint_num_classes(cfg)
    if expected_num_classes is not None and n_cfg is not None and n_cfg != int(expected_num_classes):
        raise CheckpointError(
            f"checkpoint {folder} has {n_cfg} classes but the dataset has {int(expected_num_classes)} classes"
        )
    arch = cfg.get("architecture") or cfg["pretrained_cfg"]["architecture"]
    from timm.models import split_model_name_tag

    if not timm.is_model(split_model_name_tag(arch)[0]):
        raise CheckpointError(f"{cfg_path}: unknown timm architecture {arch!r} (timm {timm.__version__})")
    state_dict = _load_safetensors(weights, map_location)
    try:
        model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=False)
    except Exception as e:
        raise CheckpointError(f"cannot build {arch!r} from {cfg_path}: {type(e).__name__}: {e}") from e
    n_model = num_classes_of(model)
    if expected_num_classes is not None and n_model != int(expected_num_classes):
        raise CheckpointError(
            f"checkpoint {folder} has {n_model} classes but the dataset has {int(expected_num_classes)} classes"
        )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        msg = str(e).splitlines()
        raise CheckpointError(
            f"weights in {weights} do not fit {arch!r} as configured in {cfg_path}: "
            + " ".join(m.strip() for m in msg[:4])[:800]
        ) from e
    return model.to(map_location).eval()


def _load_safetensors(path: Path, map_location="cpu") -> dict:
    from safetensors.torch import load_file

    device = str(map_location) if map_location is not None else "cpu"
    try:
        return load_file(str(path), device=device)
    except Exception as e:  # SafetensorError, OSError, ... on truncated/corrupt files
        raise CheckpointError(
            f"cannot read weights file {path} (corrupt or truncated safetensors): {type(e).__name__}: {e}"
        ) from e
