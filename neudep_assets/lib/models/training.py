"""Train a timm classifier from scratch on the CPU (or a GPU when given one).

AdamW (timm's optimizer factory: no weight decay on norms/biases/embeddings) with timm's cosine
schedule after a linear warm-up (per step), label smoothing. Images arrive as uint8 (fixed set) or come from a ``sampler`` that draws
fresh samples every epoch (the glyph renderer). Inputs are scaled to [0, 1] and normalized with
``(x - mean) / std``: the same preprocessing as :func:`neudep_assets.lib.models.logits.compute_logits`.
On the CPU the same config, data and seed give the same weights, bit for bit, whatever the process
and its thread count: training runs in ``threads`` intra-op threads (:mod:`.threads`).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from neudep_assets.lib.models.logits import compute_logits
from neudep_assets.lib.models.threads import DEFAULT_THREADS, check_threads, fixed_threads
from neudep_assets.lib.specs import AUGMENTS

def _shift(x, max_shift: int = 2):
    """Random integer translation by up to ``max_shift`` px per sample, border-replicated
    (torchvision's RandomCrop with edge padding, drawn per sample from torch's seeded generator)."""
    import torch
    from torchvision.transforms import v2

    crop = v2.RandomCrop(tuple(x.shape[-2:]), padding=max_shift, padding_mode="edge")
    return torch.stack([crop(img) for img in x])


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
             device: str = "cpu", threads: int = DEFAULT_THREADS) -> float:
    """Top-1 accuracy of ``model`` on uint8 images (same preprocessing as training)."""
    logits = compute_logits(model, images, mean=mean, std=std, batch_size=batch_size, device=device,
                            threads=threads)
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
    mean_logit_penalty: float = 0.0,
    threads: int = DEFAULT_THREADS,
) -> dict:
    """Train ``model`` in place; return ``{"val_acc", "history", "seconds", ...}``.

    ``sampler(labels: LongTensor, generator) -> float (B,C,S,S) in [0,1]`` draws fresh images for
    each batch (the labels of an epoch are ``train_labels``, shuffled); without it the fixed
    ``train_images`` (uint8) are used, optionally with random shifts (``augment="shift"``).
    ``fresh_samples=False`` ignores the sampler (trains on the fixed images).
    ``mean_logit_penalty`` α adds α·E[m(x)²], m(x) the sample's mean logit over the classes. On given
    logits softmax cannot see it (its gradient lies along the all-ones logit direction, the cross-entropy's
    is orthogonal to it), but through the shared backbone it changes the trained weights, and so the
    model and its predictions, beside removing the common offset plain cross-entropy leaves free.
    ``threads``: torch's intra-op threads during training (restored after): the weights' last bits
    depend on it, not on the process' own count.
    Each epoch logs loss, train accuracy, val accuracy and seconds through ``log``.
    """
    import torch
    import torch.nn.functional as F
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    log = log or (lambda *_a, **_k: None)
    check_threads(threads, "train.threads")
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
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
    # timm's factory: AdamW, no weight decay on norms / biases / model.no_weight_decay()
    opt = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))
    batch_size = max(1, min(int(batch_size), n))
    steps_per_epoch = -(-n // batch_size)
    if steps_per_epoch > 1 and n % batch_size == 1:
        steps_per_epoch -= 1  # a batch of one breaks batch norm
    total = steps_per_epoch * epochs
    warmup = int(round(warmup_epochs * steps_per_epoch))
    # timm's cosine schedule per step: linear warm-up to lr, then cosine down to min_lr_ratio·lr. At most one
    # step after the warm-up takes lr whatever t_initial is ≥ 1; 2 spares timm's "no effect" warning there
    sched = CosineLRScheduler(opt, t_initial=max(2, total - warmup), lr_min=lr * min_lr_ratio, warmup_t=warmup,
                              warmup_lr_init=lr / max(1, warmup), warmup_prefix=True, t_in_epochs=False)
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)

    history: list[dict] = []
    t_start = time.perf_counter()
    step = 0
    val_acc = float("nan")
    with fixed_threads(threads):
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
                    xb = _shift(xb)
                xb = xb.to(device, non_blocking=True)
                yb_d = yb.to(device, non_blocking=True)
                xb = (xb - mean_t) / std_t
                sched.step_update(step)
                out = model(xb)
                loss = F.cross_entropy(out, yb_d, label_smoothing=label_smoothing)
                if mean_logit_penalty:
                    loss = loss + mean_logit_penalty * out.mean(dim=1).square().mean()
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
                                   batch_size=eval_batch_size, device=device, threads=threads)
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
        "threads": threads,
    }
