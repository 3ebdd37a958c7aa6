"""Checkpoints in timm's folder format: ``config.json`` + ``model.safetensors``.

Written by ``timm.models.save_for_hf(..., safe_serialization=True)`` (atomically: built aside and
renamed into place) and read by ``timm.create_model("local-dir:PATH")``. Weights are only ever read
with safetensors: a folder that holds only a pickle (``pytorch_model.bin``, ``*.pth``) is rejected,
never unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

from neudep_assets.lib.models.timm_models import CheckpointError, num_classes_of, timm_kwargs
from neudep_assets.lib.specs import plain

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".ckpt", ".tar")


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
        extra = plain(dict(extra))
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
            model_args=timm_kwargs(model_args or {}), safe_serialization=True,
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
