"""`model_logits`: raw logits of a timm model (a local checkpoint folder, a hub name or a module) on an
ImageFolder or a batch of images, with the pipeline's own preprocessing (lib/models/logits.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neudep_assets.api import inputs


@dataclass
class ModelLogits:
    """Logits (samples × classes, float32, raw) with what is known of the samples: the labels and class
    names of an ImageFolder (the sorted folder names) and each image's path relative to it."""

    logits: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    sample_ids: list[str] | None = None


def _model(model_or_name):
    """A module as is; a folder: a local timm checkpoint (config.json + model.safetensors); else a timm
    hub name with its pretrained weights (offline: the lib's PretrainedWeightsUnavailable)."""
    from neudep_assets.lib.models import load_checkpoint
    from neudep_assets.lib.models.timm_models import create_model
    from neudep_assets.lib.specs import ModelSpec

    if hasattr(model_or_name, "forward") and hasattr(model_or_name, "eval"):
        return model_or_name.eval()
    if not isinstance(model_or_name, (str, os.PathLike)):
        raise TypeError("checkpoint_or_timm_name must be a checkpoint folder, a timm model name or a torch module, "
                        f"got {type(model_or_name).__name__}")
    text = os.fspath(model_or_name)
    if isinstance(model_or_name, os.PathLike) or Path(text).exists() or (os.sep in text and ":" not in text):
        return load_checkpoint(Path(text))
    return create_model(ModelSpec(name=text, arch=text, pretrained=True), None, 3)


def _images(images):
    """An ImageFolder's Path, or an image batch as a numpy array (N,H,W) / (N,C,H,W)."""
    if isinstance(images, (str, os.PathLike)):
        root = Path(images)
        if not root.is_dir():
            raise FileNotFoundError(f"images: {root} is not a folder (an ImageFolder: root/<class>/<image>)")
        return root
    a = inputs.as_numpy(images, "images")
    if a.ndim not in (3, 4) or a.shape[0] < 1:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W) with N ≥ 1, got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise ValueError("images hold NaN or inf values")
        if a.min() < 0 or a.max() > 1:
            raise ValueError(f"images: float images must lie in [0, 1] (or pass uint8), got [{a.min():g}, {a.max():g}]")
    return a


def model_logits(checkpoint_or_timm_name, images, *, batch_size: int | None = None, device: str = "auto",
                 progress: bool = True) -> ModelLogits:
    """Raw logits of a classifier on images, as the pipeline's ``logits`` asset computes them.

    Parameters
    ----------
    checkpoint_or_timm_name : str, Path or torch.nn.Module
        A local timm checkpoint folder (``config.json`` + ``model.safetensors``), a timm hub name with
        pretrained weights (e.g. ``"resnet50.a1_in1k"``; offline only when in the Hugging Face cache),
        or a model already built.
    images : str, Path, array or tensor
        An ImageFolder (``root/<class>/<image>``: timm's eval transform of the model, i.e. resize, centre
        crop, normalize) or a batch, uint8 (N, H, W) / (N, C, H, W) or float in [0, 1] (scaled,
        resized to a fixed-size model's input, normalized with the model's mean and std).
    batch_size : int, optional
        Images per forward pass (default: fitted to the input size and the memory at hand).
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
    progress : bool
        A tqdm progress bar over the images.

    Returns
    -------
    ModelLogits
        ``.logits`` (N, classes) float32; for an ImageFolder also ``.labels``, ``.class_names``, ``.sample_ids``.

    Examples
    --------
    >>> import numpy as np, timm
    >>> from neudep_assets import model_logits
    >>> net = timm.create_model("resnet18", num_classes=5, in_chans=1)
    >>> images = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32), dtype=np.uint8)
    >>> model_logits(net, images, device="cpu", progress=False).logits.shape
    (8, 5)
    """
    imgs = _images(images)
    batch_size = inputs.positive_int(batch_size, "batch_size")
    dev = inputs.device(device)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    from tqdm.auto import tqdm

    from neudep_assets.lib.models.logits import compute_logits, imagefolder_logits, model_batch_size
    from neudep_assets.lib.models.timm_models import model_data_config

    model = _model(checkpoint_or_timm_name)
    cfg = model_data_config(model)
    bar = None

    def step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="img", desc="logits", disable=not progress)
        bar.update(done - bar.n)

    try:
        if isinstance(imgs, Path):
            b = model_batch_size(model, batch_size, *cfg["input_size"][1:])
            out, labels, ids, names = imagefolder_logits(model, imgs, batch_size=b, device=dev, on_batch=step)
            return ModelLogits(out, labels, names, ids)
        b = model_batch_size(model, batch_size, *imgs.shape[-2:])
        return ModelLogits(compute_logits(model, imgs, mean=cfg["mean"], std=cfg["std"], batch_size=b, device=dev,
                                          on_batch=step))
    finally:
        if bar is not None:
            bar.close()
