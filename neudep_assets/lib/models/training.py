"""Train a timm classifier from scratch on the CPU (or a GPU when given one).

AdamW with linear warm-up then cosine decay (per step), label smoothing, no weight decay on
norms/biases/embeddings. Images arrive as uint8 (fixed set) or come from a ``sampler`` that draws
fresh samples every epoch (the glyph renderer). Inputs are scaled to [0, 1] and normalized with
``(x - mean) / std``: the same preprocessing as :func:`neudep_assets.lib.logits.compute_logits`.
Deterministic for a given seed on the CPU.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

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
}
_AUGMENTS = ("none", "shift")

_INT_KEYS = ("epochs", "batch_size", "seed", "eval_every")
_FLOAT_KEYS = ("lr", "weight_decay", "label_smoothing", "warmup_epochs", "min_lr_ratio", "grad_clip")


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
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{where}: train.{k} must be an integer, got {v!r}")
            v = int(v)
            if k != "seed" and v < 1:
                raise ValueError(f"{where}: train.{k} must be >= 1, got {v}")
        elif k in _FLOAT_KEYS:
            if v is None and k == "grad_clip":
                out[k] = None
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
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
            if v not in _AUGMENTS:
                raise ValueError(f"{where}: train.augment must be one of {_AUGMENTS}, got {v!r}")
        out[k] = v
    return out


def resolve_train_config(train: Mapping[str, Any] | None) -> dict:
    """Defaults overlaid with a validated ``train:`` block: the kwargs for :func:`train_classifier`."""
    return {**TRAIN_DEFAULTS, **validate_train_config(train or {})}


def _lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    skip = set()
    if hasattr(model, "no_weight_decay"):
        try:
            skip = set(model.no_weight_decay())
        except Exception:
            skip = set()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or n in skip or n.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _shift(x, g, max_shift: int = 2):
    """Random integer translation by up to ``max_shift`` px per sample, border-replicated."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = x.shape
    p = max_shift
    xp = F.pad(x, (p, p, p, p), mode="replicate")
    dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
    dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # (b, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])  # (b, w)
    idx_r = rows[:, None, :, None].expand(b, c, h, w + 2 * p)
    xr = torch.gather(xp, 2, idx_r.to(x.device))
    idx_c = cols[:, None, None, :].expand(b, c, h, w)
    return torch.gather(xr, 3, idx_c.to(x.device))


def _as_float_images(images: np.ndarray):
    """uint8 (N,S,S) / (N,C,S,S) -> float tensor (N,C,S,S) in [0,1]; float arrays are taken as [0,1]."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images))
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4:
        raise ValueError(f"images must be (N,S,S) or (N,C,S,S), got shape {tuple(images.shape)}")
    if t.dtype == torch.uint8:
        return t
    return t.float()


def _to_unit(xb):
    import torch

    return xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb.float()


def evaluate(model, images: np.ndarray, labels: np.ndarray, *, mean, std, batch_size: int = 512,
             device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on uint8 images (same preprocessing as training)."""
    from .logits import compute_logits

    logits = compute_logits(model, images, mean=mean, std=std, batch_size=batch_size, device=device)
    return float((logits.argmax(1) == np.asarray(labels)).mean()) if len(labels) else float("nan")


def train_classifier(
    model,
    *,
    train_images: np.ndarray | None,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    sampler: Callable | None = None,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: str = "cpu",
    log: Callable[[str], Any] | None = print,
    label_smoothing: float = 0.1,
    warmup_epochs: float = 1.0,
    min_lr_ratio: float = 0.0,
    grad_clip: float | None = None,
    augment: str = "none",
    eval_every: int = 1,
    eval_batch_size: int = 512,
    fresh_samples: bool = True,
) -> dict:
    """Train ``model`` in place; return ``{"val_acc", "history", "seconds", ...}``.

    ``sampler(labels: LongTensor, generator) -> float (B,C,S,S) in [0,1]`` draws fresh images for
    each batch (the labels of an epoch are ``train_labels``, shuffled); without it the fixed
    ``train_images`` (uint8) are used, optionally with random shifts (``augment="shift"``).
    ``fresh_samples=False`` ignores the sampler (trains on the fixed images).
    Each epoch logs loss, train accuracy, val accuracy and seconds through ``log``.
    """
    import torch
    import torch.nn.functional as F

    log = log or (lambda *_a, **_k: None)
    if augment not in _AUGMENTS:
        raise ValueError(f"augment must be one of {_AUGMENTS}, got {augment!r}")
    if not fresh_samples:
        sampler = None
    labels_all = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    n = int(labels_all.shape[0])
    if n == 0:
        raise ValueError("no training samples")
    if sampler is None:
        if train_images is None:
            raise ValueError("train_images is required when no sampler is given")
        if len(train_images) != n:
            raise ValueError(f"train_images has {len(train_images)} samples but train_labels has {n}")
        images_all = _as_float_images(train_images)
    else:
        images_all = None
    val_labels = np.asarray(val_labels)

    torch.manual_seed(seed)  # drop-path / dropout inside the model
    g = torch.Generator().manual_seed(int(seed))
    model.to(device)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999))
    batch_size = max(1, min(int(batch_size), n))
    steps_per_epoch = -(-n // batch_size)
    if steps_per_epoch > 1 and n % batch_size == 1:
        steps_per_epoch -= 1  # a batch of one breaks batch norm
    total = steps_per_epoch * epochs
    warmup = int(round(warmup_epochs * steps_per_epoch))
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)

    history: list[dict] = []
    t_start = time.perf_counter()
    step = 0
    val_acc = float("nan")
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=g)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            yb = labels_all[idx]
            if sampler is not None:
                xb = sampler(yb, g)
                if xb.ndim == 3:
                    xb = xb[:, None]
                xb = _to_unit(xb)
            else:
                xb = _to_unit(images_all[idx])
            if augment == "shift":
                xb = _shift(xb, g)
            xb = xb.to(device, non_blocking=True)
            yb_d = yb.to(device, non_blocking=True)
            xb = (xb - mean_t) / std_t
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, warmup, lr, min_lr_ratio)
            out = model(xb)
            loss = F.cross_entropy(out, yb_d, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            step += 1
            bs = int(yb.shape[0])
            loss_sum += float(loss.detach()) * bs
            correct += int((out.detach().argmax(1) == yb_d).sum())
            seen += bs
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss is not finite); lower lr")
        train_seconds = time.perf_counter() - t0
        last = epoch == epochs - 1
        if last or (eval_every and (epoch + 1) % eval_every == 0):
            val_acc = evaluate(model, val_images, val_labels, mean=mean, std=std,
                               batch_size=eval_batch_size, device=device)
        rec = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "val_acc": val_acc,
            "lr": opt.param_groups[0]["lr"],
            "train_seconds": train_seconds,
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        log(
            f"epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f}  train acc {rec['train_acc']:.4f}  "
            f"val acc {val_acc:.4f}  {rec['seconds']:.1f}s (train {train_seconds:.1f}s)"
        )
    model.eval()
    seconds = time.perf_counter() - t_start
    return {
        "val_acc": val_acc,
        "history": history,
        "seconds": seconds,
        "epochs": epochs,
        "steps": step,
        "train_samples_per_epoch": min(n, steps_per_epoch * batch_size),
    }
