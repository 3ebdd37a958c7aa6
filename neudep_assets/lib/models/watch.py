"""Checkpoint folders dropped into watched directories (config ``watch:``) become models.

Every sub-folder of a watched directory that holds a timm checkpoint (``config.json`` with an
``architecture`` + ``model.safetensors``) is a model named after the folder. Refused (with the reason,
never registered): a name that is not a valid model / partition key, a symlink that leads out of the
watched directory, a folder without a readable config or weights, and a pickle (``*.bin``, ``*.pth``…)
that does not load with ``torch.load(weights_only=True)``. A pickle that does load is converted once
to a safetensors folder under the data root; the pickle itself is never unpickled beyond tensors.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from neudep_assets.lib.models.checkpoint_io import (CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, _replace_dir,
                                                    read_checkpoint_config)
from neudep_assets.lib.models.timm_models import CheckpointError
from neudep_assets.lib.specs import _NAME_RE, ModelSpec


@dataclass(frozen=True)
class Watched:
    """A checkpoint folder found in a watched directory."""

    name: str
    folder: Path
    arch: str
    weights: Path  # model.safetensors, or the one pickle file to convert

    @property
    def is_pickle(self) -> bool:
        return self.weights.name != WEIGHTS_NAME

    def stamp(self) -> list[int]:
        """Size and mtime of the weights file: what moves when it is rewritten (no hashing)."""
        st = self.weights.stat()
        return [st.st_size, st.st_mtime_ns]

    def sha256(self) -> str:
        h = hashlib.sha256()
        with self.weights.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    def spec(self, root: Path) -> ModelSpec:
        """The model spec: the folder itself, or its safetensors conversion under the data root."""
        return ModelSpec(name=self.name, checkpoint=str(converted_dir(root, self.name) if self.is_pickle else self.folder))


def converted_dir(root: Path, name: str) -> Path:
    return Path(root) / "checkpoints" / "watched" / name


def _escapes(folder: Path, top: Path) -> Path | None:
    """The first path in `folder` (itself included) that is a symlink resolving outside `top`."""
    for p in [folder, *sorted(folder.rglob("*"))]:
        if p.is_symlink() and not p.resolve().is_relative_to(top):
            return p
    return None


def inspect_folder(folder: Path, top: Path) -> Watched:
    """Validate one candidate folder of watched directory `top`; CheckpointError names the culprit."""
    name = folder.name
    if not _NAME_RE.match(name):
        raise CheckpointError(f"checkpoint folder {folder}: name {name!r} is not a valid model name / partition key "
                              "(letters, digits, '_', '.', '-'; starting with a letter or digit)")
    bad = _escapes(folder, top.resolve())
    if bad is not None:
        raise CheckpointError(f"checkpoint folder {folder}: {bad} is a symlink out of the watched directory {top} "
                              f"(to {bad.resolve()})")
    cfg = read_checkpoint_config(folder)
    arch = cfg.get("architecture") or cfg["pretrained_cfg"]["architecture"]
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
        if len(pickles) != 1:
            raise CheckpointError(f"checkpoint folder {folder} has no {WEIGHTS_NAME}"
                                  + (f" and {len(pickles)} pickle files" if pickles else ""))
        weights = pickles[0]
    return Watched(name=name, folder=folder, arch=arch, weights=weights)


def scan_watch(dirs: list[Path]) -> tuple[list[Watched], list[tuple[Path, str]]]:
    """Checkpoint folders of the watched directories, and the refused ones with the reason.

    Hidden entries (``.name``: temporary folders of atomic writes) are skipped; a name seen twice is
    refused the second time.
    """
    found: dict[str, Watched] = {}
    refused: list[tuple[Path, str]] = []
    for top in dirs:
        top = Path(top)
        if not top.is_dir():
            continue
        for folder in sorted(top.iterdir()):
            if folder.name.startswith(".") or not (folder.is_dir() or folder.is_symlink()):
                continue
            try:
                w = inspect_folder(folder, top)
            except CheckpointError as exc:
                refused.append((folder, str(exc)))
                continue
            if w.name in found:
                refused.append((folder, f"checkpoint folder {folder}: model name {w.name!r} already taken by "
                                        f"{found[w.name].folder}"))
                continue
            found[w.name] = w
    return list(found.values()), refused


def convert_pickle(w: Watched, root: Path) -> Path:
    """Convert a pickle checkpoint to safetensors under the data root if it loads with
    ``torch.load(weights_only=True)`` (tensors only, no arbitrary objects); refuse it otherwise."""
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(w.weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: it wants to run code we will not run
        raise CheckpointError(f"refused pickle checkpoint {w.weights}: it does not load with weights_only=True "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"refused pickle checkpoint {w.weights}: not a state dict of tensors")
    dst = converted_dir(root, w.name)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_NAME))
        shutil.copyfile(w.folder / CONFIG_NAME, tmp / CONFIG_NAME)
        (tmp / "neudep_source.json").write_text(json.dumps({"converted_from": str(w.weights)}))
        _replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
