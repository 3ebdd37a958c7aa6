"""Getting a checkpoint for a registered model: train it, take a local folder, or a hub model."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.config import stable_hash
from neudep_assets.lib.data import GlyphRenderer, PreparedDataset, glyph_classes, load_images
from neudep_assets.lib.models import training
from neudep_assets.lib.models.checkpoint_io import load_checkpoint, save_checkpoint, weights_sha256
from neudep_assets.lib.models.logits import compute_logits, imagefolder_logits, model_batch_size
from neudep_assets.lib.models.timm_models import CheckpointError, create_model, model_data_config
from neudep_assets.lib.specs import TRAIN_DEFAULTS, GlyphConfig, ModelSpec

DEFAULT_MEAN, DEFAULT_STD = (0.5,), (0.5,)


@dataclass(frozen=True)
class CheckpointInfo:
    model: str
    sha256: str
    path: str
    origin: str  # trained | local | hub
    source: str
    arch: str
    num_classes: int
    num_features: int
    n_params: int
    train_val_acc: float | None = None
    train_seconds: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _describe(model, spec: ModelSpec, folder: Path, origin: str, source: str, **extra) -> CheckpointInfo:
    return CheckpointInfo(
        model=spec.name, sha256=weights_sha256(folder), path=str(folder), origin=origin, source=source,
        arch=getattr(model, "pretrained_cfg", {}).get("architecture") or spec.arch or "unknown",
        num_classes=int(model.num_classes), num_features=int(model.num_features),
        n_params=int(sum(p.numel() for p in model.parameters())), **extra,
    )


def trained_checkpoint_dir(spec: ModelSpec, ds: PreparedDataset, root: Path) -> Path:
    """Content address of a pipeline-trained checkpoint: architecture, arguments, training, data and
    the code version of the training science."""
    key = stable_hash({"arch": spec.arch, "model_args": spec.model_args, "train": spec.train, "dataset": ds.dataset_id,
                       "code": code_version(__name__)})
    return root / "checkpoints" / spec.name / key


def obtain_checkpoint(spec: ModelSpec, ds: PreparedDataset, root: Path, *, device: str = "cpu", log=print) -> CheckpointInfo:
    """Return the checkpoint of `spec` for dataset `ds`, training it first if the pipeline owns it."""
    if spec.checkpoint:
        folder = Path(spec.checkpoint)
        model = load_checkpoint(folder, expected_num_classes=ds.n_classes)
        return _describe(model, spec, folder, "local", str(folder))
    if spec.pretrained:
        key = stable_hash({"arch": spec.arch, "model_args": spec.model_args}, 12)
        folder = root / "checkpoints" / spec.name / f"hub-{key}"
        if not (folder / "model.safetensors").is_file():
            model = create_model(spec, num_classes=ds.n_classes, in_chans=3)
            save_checkpoint(model, folder, model_args=spec.model_args)
        model = load_checkpoint(folder, expected_num_classes=ds.n_classes)
        return _describe(model, spec, folder, "hub", spec.arch or "")

    folder = trained_checkpoint_dir(spec, ds, root)
    meta_file = folder / "neudep_training.json"
    if (folder / "model.safetensors").is_file() and meta_file.is_file():
        log(f"{spec.name}: found trained checkpoint {folder}")
        model = load_checkpoint(folder, expected_num_classes=ds.n_classes)
        meta = json.loads(meta_file.read_text())
        return _describe(model, spec, folder, "trained", "neudep", train_val_acc=meta.get("val_acc"),
                         train_seconds=meta.get("seconds"))
    return _train(spec, ds, folder, device=device, log=log)


def _train(spec: ModelSpec, ds: PreparedDataset, folder: Path, *, device: str, log) -> CheckpointInfo:
    if ds.kind != "glyphs":
        raise CheckpointError(f"model {spec.name}: training from scratch needs the glyph dataset")
    gcfg = GlyphConfig(**ds.params["glyphs"])
    renderer = GlyphRenderer.for_classes(glyph_classes(gcfg), gcfg.image_size)
    train_x, train_y, _ = load_images(ds, "train")
    val_x, val_y, _ = load_images(ds, "val")
    model = create_model(spec, num_classes=ds.n_classes, in_chans=1, mean=DEFAULT_MEAN, std=DEFAULT_STD,
                                img_size=gcfg.image_size)
    t = {**TRAIN_DEFAULTS, **spec.train}
    log(f"{spec.name}: training {spec.arch} on {len(train_y)} images of {ds.n_classes} classes: {t}")
    t0 = time.perf_counter()
    result = training.train_classifier(
        model, train_images=train_x, train_labels=train_y, val_images=val_x, val_labels=val_y,
        sampler=renderer.render, mean=DEFAULT_MEAN, std=DEFAULT_STD, device=device, log=log, **t)
    seconds = time.perf_counter() - t0
    model.to("cpu")
    extra = {"val_acc": float(result["val_acc"]), "seconds": seconds, "dataset_id": ds.dataset_id,
             "threads": result["threads"]}
    save_checkpoint(model, folder, model_args=spec.model_args, extra={"neudep_training.json": extra})
    return _describe(model, spec, folder, "trained", "neudep", train_val_acc=extra["val_acc"], train_seconds=seconds)


def split_logits(info: CheckpointInfo, ds: PreparedDataset, split: str, *, device: str = "cpu",
                 batch_size: int | None = None, log=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (float32), labels and sample ids of one split under one checkpoint. ``batch_size`` None:
    :func:`auto_batch_size` for the size the model sees (its fixed input size, else the images')."""
    model = load_checkpoint(Path(info.path), expected_num_classes=ds.n_classes)
    cfg = getattr(model, "pretrained_cfg", None) or {}

    def fit(h, w):
        b = model_batch_size(model, batch_size, h, w)
        if log and batch_size is None:
            log(f"logits in batches of {b} (automatic for the model's input; a model entry's logits_batch_size "
                "sets it)")
        return b

    if ds.kind == "glyphs":
        images, labels, ids = load_images(ds, split)
        out = compute_logits(model, images, mean=cfg.get("mean", DEFAULT_MEAN), std=cfg.get("std", DEFAULT_STD),
                             batch_size=fit(*images.shape[-2:]), device=device, log=log)
        return out, labels, ids
    batch_size = fit(*model_data_config(model)["input_size"][1:])
    out, labels, ids, _ = imagefolder_logits(model, Path(ds.splits[split]), batch_size=batch_size,
                                                        device=device, log=log)
    if split == "ood":
        labels = np.full_like(labels, -1)
    return out, labels, np.asarray(ids)
