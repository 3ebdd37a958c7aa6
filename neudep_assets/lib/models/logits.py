"""Batched logits of a classifier: on uint8 arrays (the glyph splits) or on an ImageFolder.

Logits are returned raw (float32, no centering or normalization: paper, Remark 1). Preprocessing is
the model's own: images scaled to [0, 1] then ``(x - mean) / std`` with the mean/std of its
``pretrained_cfg`` (config.json) — the same as in :mod:`neudep_assets.lib.models.training`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from neudep_assets.lib.data import IMAGE_EXTENSIONS
from neudep_assets.lib.models.threads import DEFAULT_THREADS, fixed_threads
from neudep_assets.lib.models.timm_models import model_data_config, model_in_chans, num_classes_of


def pick_device(preferred: str | None = None) -> str:
    """``preferred`` if given (and usable), else cuda -> mps -> cpu."""
    import torch

    if preferred:
        p = str(preferred).lower()
        if p.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"device {preferred!r} asked for, but CUDA is not available")
        elif p == "mps":
            if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
                raise ValueError("device 'mps' asked for, but MPS is not available")
        elif p != "cpu":
            raise ValueError(f"unknown device {preferred!r} (cpu, cuda, cuda:N, mps)")
        return p
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


#: activation memory of an inference forward pass per input pixel, measured on CPU (EfficientNet-B0 at
#: 224 px: ≈ 20 MB per image, a batch of 512 ≈ 10 GB); small CNNs and ViTs need less
BYTES_PER_PIXEL = 400


def available_memory() -> int:
    """Bytes of memory available now (psutil), or 4 GiB when it cannot be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - any failure: a conservative guess
        return 4 << 30


def auto_batch_size(height: int, width: int, *, memory: int | None = None, cap: int = 512) -> int:
    """Images per forward pass for logits: what fits a budget of min(1 GiB, an eighth of the memory at
    hand) at :data:`BYTES_PER_PIXEL`, between 1 and ``cap`` (32 px: 512; 224 px: ≈ 50)."""
    memory = available_memory() if memory is None else memory
    budget = min(1 << 30, max(memory // 8, 64 << 20))
    return int(max(1, min(cap, budget // (BYTES_PER_PIXEL * max(1, height * width)))))


def model_batch_size(model, batch_size: int | None, height: int, width: int) -> int:
    """``batch_size`` if given, else :func:`auto_batch_size` for the size ``model`` sees (its fixed input
    size, else the images' ``height`` × ``width``)."""
    if batch_size is not None:
        return batch_size
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("fixed_input_size") and cfg.get("input_size"):
        height, width = cfg["input_size"][1:]
    return auto_batch_size(int(height), int(width))


class _Progress:
    def __init__(self, log: Callable | None, total: int, what: str):
        self.log, self.total, self.what = log, total, what
        self.t0 = time.perf_counter()
        self.next_pct = 25

    def update(self, done: int) -> None:
        if self.log is None or self.total == 0:
            return
        pct = 100 * done / self.total
        if pct >= self.next_pct or done == self.total:
            dt = time.perf_counter() - self.t0
            self.log(f"{self.what}: {done}/{self.total} ({pct:.0f}%) in {dt:.1f}s")
            while self.next_pct <= pct:
                self.next_pct += 25


def _model_input(model):
    """(in_chans, (H, W) or None when the model takes any size)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans = model_in_chans(model)
    size = None
    if cfg.get("fixed_input_size") and cfg.get("input_size"):
        size = tuple(int(s) for s in cfg["input_size"][1:])
    return in_chans, size


def compute_logits(
    model,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 512,
    device: str = "cpu",
    log: Callable[[str], Any] | None = None,
    on_batch: Callable[[int, int], Any] | None = None,
    threads: int = DEFAULT_THREADS,
) -> np.ndarray:
    """Raw logits (N, n_classes) float32 of ``model`` on ``images``.

    ``images``: uint8 (N,S,S) or (N,C,S,S) (float arrays are taken as already in [0, 1]). A grey image
    is repeated over the channels of an RGB model; a model with a fixed input size gets the images
    resized (bilinear) to it. Batched, under ``torch.no_grad``, model in eval mode, in ``threads``
    torch threads (the logits' last bits depend on the count: :mod:`.threads`). ``on_batch`` is
    called with (images done, images) after each batch.
    """
    import torch
    import torch.nn.functional as F

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N,S,S) or (N,C,S,S), got shape {images.shape}")
    n = images.shape[0]
    in_chans, size = _model_input(model)
    c = images.shape[1]
    if c != in_chans and c != 1:
        raise ValueError(f"images have {c} channels but the model takes {in_chans}")
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    if mean_t.shape[1] not in (1, in_chans) or std_t.shape[1] not in (1, in_chans):
        raise ValueError(f"mean/std have {mean_t.shape[1]}/{std_t.shape[1]} values for {in_chans} channels")
    model.eval()
    model.to(device)
    progress = _Progress(log, n, "logits")
    out: list[np.ndarray] = []
    with torch.no_grad(), fixed_threads(threads):
        for s in range(0, n, max(1, int(batch_size))):
            xb = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device)
            xb = xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb.float()
            if xb.shape[1] != in_chans:
                xb = xb.expand(-1, in_chans, -1, -1)
            if size is not None and tuple(xb.shape[-2:]) != size:
                xb = F.interpolate(xb, size=size, mode="bilinear", align_corners=False, antialias=True)
            xb = (xb - mean_t) / std_t
            out.append(model(xb).float().cpu().numpy())
            progress.update(min(n, s + batch_size))
            if on_batch is not None:
                on_batch(min(n, s + batch_size), n)
    if not out:
        return np.zeros((0, num_classes_of(model)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def imagefolder_logits(
    model,
    root: Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    log: Callable[[str], Any] | None = None,
    on_batch: Callable[[int, int], Any] | None = None,
    threads: int = DEFAULT_THREADS,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Logits on an ImageFolder tree (``root/<class>/<image>``) with timm's eval transform for ``model``.

    Returns ``(logits float32 (N, n), labels int64 (N,), sample_ids, class_names)``: ``labels`` index
    ``class_names`` (the sorted folder names, as torchvision's ImageFolder orders them) and
    ``sample_ids`` are the image paths relative to ``root``. The model runs in ``threads`` torch threads;
    ``on_batch``: as in :func:`compute_logits`.
    """
    import torch
    from PIL import Image
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} is not a folder")
    cfg = model_data_config(model)
    in_chans = cfg["input_size"][0]
    mode = "L" if in_chans == 1 else "RGB"

    def loader(path: str):
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert(mode)

    try:
        ds = ImageFolder(str(root), transform=None, loader=loader,
                         is_valid_file=lambda p: p.lower().endswith(IMAGE_EXTENSIONS))
    except (FileNotFoundError, RuntimeError) as e:
        raise FileNotFoundError(
            f"image folder {root} holds no images in class sub-folders (root/<class>/<image>; "
            f"extensions {', '.join(IMAGE_EXTENSIONS)}): {e}"
        ) from None
    if len(ds) == 0:
        raise FileNotFoundError(f"image folder {root} holds no images")
    transform = create_transform(
        input_size=cfg["input_size"], interpolation=cfg.get("interpolation", "bilinear"),
        mean=cfg["mean"], std=cfg["std"], crop_pct=cfg.get("crop_pct", 1.0),
        crop_mode=cfg.get("crop_mode", "center"), is_training=False,
    )
    ds.transform = transform
    if log:
        log(f"imagefolder {root}: {len(ds)} images in {len(ds.classes)} classes; transform {transform}")
    dl = torch.utils.data.DataLoader(ds, batch_size=max(1, int(batch_size)), shuffle=False,
                                     num_workers=int(num_workers),
                                     pin_memory=str(device).startswith("cuda"))
    model.eval()
    model.to(device)
    progress = _Progress(log, len(ds), f"logits {root.name}")
    out: list[np.ndarray] = []
    done = 0
    with torch.no_grad(), fixed_threads(threads):
        for xb, _yb in dl:
            out.append(model(xb.to(device)).float().cpu().numpy())
            done += xb.shape[0]
            progress.update(done)
            if on_batch is not None:
                on_batch(done, len(ds))
    labels = np.asarray([t for _p, t in ds.samples], dtype=np.int64)
    sample_ids = [Path(p).relative_to(root).as_posix() for p, _t in ds.samples]
    return np.concatenate(out).astype(np.float32, copy=False), labels, sample_ids, list(ds.classes)
