"""Checkpoints derived from a model for the paper's uses of dependencies.

- §3.2: a base checkpoint of the base classes only (the model's own recipe on the base classes, or,
  for a model that cannot be retrained here, the model with the new classes' head rows removed);
  logits and penultimate features of a checkpoint in one pass.
- §3.3: the dependency regularizer ``alpha·Σ_pairs |E_batch[f_i f_j]|`` and the fine-tune of a parent
  with it (alpha = 0: the control, same steps, seed and data order).

Every derived checkpoint is a timm folder (safetensors) whose ``neudep_training.json`` records its
parent, classes and settings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.config import stable_hash
from neudep_assets.lib.data import GlyphRenderer, PreparedDataset, glyph_classes, load_images
from neudep_assets.lib.models import training
from neudep_assets.lib.models.checkpoint_io import load_checkpoint, read_checkpoint_config, save_checkpoint
from neudep_assets.lib.models.checkpoints import DEFAULT_MEAN, DEFAULT_STD, CheckpointInfo
from neudep_assets.lib.models.logits import compute_logits, imagefolder_logits, model_batch_size
from neudep_assets.lib.models.timm_models import CheckpointError, create_model, model_data_config
from neudep_assets.lib.specs import TRAIN_DEFAULTS, GlyphConfig, ModelSpec

META = "neudep_training.json"


def describe(folder: Path, *, model: str, origin: str, source: str, num_classes: int) -> CheckpointInfo:
    """CheckpointInfo of a derived checkpoint folder (its training record gives accuracy and time)."""
    from neudep_assets.lib.models.checkpoint_io import weights_sha256

    net = load_checkpoint(folder, expected_num_classes=num_classes)
    meta = json.loads((folder / META).read_text()) if (folder / META).is_file() else {}
    return CheckpointInfo(model=model, sha256=weights_sha256(folder), path=str(folder), origin=origin, source=source,
                          arch=net.pretrained_cfg.get("architecture") or "unknown", num_classes=int(net.num_classes),
                          num_features=int(net.num_features), n_params=int(sum(p.numel() for p in net.parameters())),
                          train_val_acc=meta.get("val_acc"), train_seconds=meta.get("seconds"))


def _done(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() and (folder / META).is_file()


# ------------------------------------------------------------------------------------------ §3.2
def train_base_checkpoint(spec: ModelSpec, ds: PreparedDataset, base: np.ndarray, root: Path, *, epochs: int = 0,
                          device: str = "cpu", log=print) -> tuple[CheckpointInfo, dict]:
    """The model's recipe (``epochs`` > 0 overrides its epochs) on the ``base`` classes only (labels
    0..len(base)-1 in the order of ``base``). Content-addressed: found again when it exists."""
    if not spec.trains or ds.kind != "glyphs":
        raise CheckpointError(f"model {spec.name}: a base checkpoint can only be trained for a model the pipeline "
                              "trains itself on the glyph dataset; use incremental.base: truncate")
    train = {**TRAIN_DEFAULTS, **spec.train, **({"epochs": int(epochs)} if epochs else {})}
    base = np.asarray(base, dtype=np.int64)
    key = stable_hash({"arch": spec.arch, "model_args": spec.model_args, "train": train, "dataset": ds.dataset_id,
                       "base": base.tolist(), "code": code_version(__name__)})
    folder = root / "checkpoints" / f"{spec.name}.base" / key
    if not _done(folder):
        import torch

        gcfg = GlyphConfig(**ds.params["glyphs"])
        renderer = GlyphRenderer.for_classes(glyph_classes(gcfg), gcfg.image_size)
        to_local = np.full(ds.n_classes, -1, dtype=np.int64)
        to_local[base] = np.arange(len(base))
        tx, ty, _ = load_images(ds, "train")
        vx, vy, _ = load_images(ds, "val")
        keep_t, keep_v = to_local[ty] >= 0, to_local[vy] >= 0
        base_t = torch.as_tensor(base)
        model = create_model(dataclasses.replace(spec, train=train), num_classes=len(base), in_chans=1,
                             mean=DEFAULT_MEAN, std=DEFAULT_STD, img_size=gcfg.image_size)
        log(f"{spec.name}: training a base checkpoint on {len(base)} of {ds.n_classes} classes: {train}")
        t0 = time.perf_counter()
        result = training.train_classifier(
            model, train_images=tx[keep_t], train_labels=to_local[ty[keep_t]], val_images=vx[keep_v],
            val_labels=to_local[vy[keep_v]], sampler=lambda yb, g: renderer.render(base_t[yb], g),
            mean=DEFAULT_MEAN, std=DEFAULT_STD, device=device, log=log, **train)
        model.to("cpu")
        meta = {"val_acc": float(result["val_acc"]), "seconds": time.perf_counter() - t0,
                "epoch_seconds": float(np.mean([h["train_seconds"] for h in result["history"]])),
                "epochs": int(train["epochs"]), "dataset_id": ds.dataset_id, "base_classes": base.tolist(),
                "train": train}
        save_checkpoint(model, folder, model_args=spec.model_args, extra={META: meta})
    meta = json.loads((folder / META).read_text())
    return describe(folder, model=f"{spec.name}.base", origin="base-retrained", source=f"neudep ({key})",
                    num_classes=len(base)), meta


def truncated_checkpoint(parent: CheckpointInfo, base: np.ndarray, root: Path) -> tuple[CheckpointInfo, dict]:
    """The parent with only the base classes' head rows kept (no training): for a model that cannot be
    retrained here. Its backbone has seen the new classes, so it answers a weaker question."""
    import torch

    base = np.asarray(base, dtype=np.int64)
    folder = root / "checkpoints" / f"{parent.model}.base" / f"trunc-{stable_hash([parent.sha256, base.tolist()])}"
    if not _done(folder):
        model = load_checkpoint(Path(parent.path))
        head = model.get_classifier()
        if not isinstance(head, torch.nn.Linear):
            raise CheckpointError(f"model {parent.model}: its classifier is a {type(head).__name__}, not a Linear "
                                  "layer; its head rows cannot be removed (incremental.base: truncate)")
        w, b = head.weight.detach()[base].clone(), None if head.bias is None else head.bias.detach()[base].clone()
        model.reset_classifier(len(base))
        new = model.get_classifier()
        with torch.no_grad():
            new.weight.copy_(w)
            if b is not None:
                new.bias.copy_(b)
        args = {k: v for k, v in (read_checkpoint_config(Path(parent.path)).get("model_args") or {}).items()
                if k != "num_classes"}
        meta = {"parent_sha256": parent.sha256, "base_classes": base.tolist(), "seconds": 0.0}
        save_checkpoint(model, folder, model_args=args, extra={META: meta})
    return describe(folder, model=f"{parent.model}.base", origin="base-truncated", source=parent.sha256,
                    num_classes=len(base)), json.loads((folder / META).read_text())


def logits_and_features(folder: Path, ds: PreparedDataset, split: str, *, num_classes: int, device: str = "cpu",
                        batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, penultimate features (the classifier's input) and labels of one split, in one pass.
    ``batch_size`` None: :func:`auto_batch_size` for the model's input size (bounded memory)."""
    model = load_checkpoint(Path(folder), expected_num_classes=num_classes)
    cfg = getattr(model, "pretrained_cfg", None) or {}

    def fit(h, w):
        return model_batch_size(model, batch_size, h, w)

    feats: list[np.ndarray] = []
    hook = model.get_classifier().register_forward_hook(
        lambda _m, inp, _o: feats.append(inp[0].detach().float().reshape(len(inp[0]), -1).cpu().numpy()))
    try:
        if ds.kind == "glyphs":
            images, labels, _ = load_images(ds, split)
            lg = compute_logits(model, images, mean=cfg.get("mean", DEFAULT_MEAN), std=cfg.get("std", DEFAULT_STD),
                                batch_size=fit(*images.shape[-2:]), device=device)
        else:
            lg, labels, _, _ = imagefolder_logits(model, Path(ds.splits[split]), device=device,
                                                  batch_size=fit(*model_data_config(model)["input_size"][1:]))
            if split == "ood":
                labels = np.full_like(labels, -1)
    finally:
        hook.remove()
    return lg, (np.concatenate(feats) if feats else np.zeros((0, model.num_features), np.float32)), labels


def training_epoch_seconds(folder: Path, ds: PreparedDataset, *, num_classes: int, batch_size: int, lr: float = 1e-3,
                           weight_decay: float = 0.0, mean_logit_penalty: float = 0.0, steps: int = 8,
                           device: str = "cpu") -> dict:
    """Wall time of one training epoch of the checkpoint over the train split (the §3.2 baseline's
    epoch): forward, cross-entropy (+ the mean-logit penalty), backward and an AdamW step per batch of
    ``batch_size``, timed over ``steps`` steps after one warm-up step and scaled to the epoch's steps
    (all of them when the epoch has fewer). Glyphs: the stored train images (no rendering: the heads'
    side reads stored images too); ImageFolder: the train split decoded through the model's eval
    transform (as its forward pass reads it). No validation pass. The checkpoint is not changed.
    Returns ``{"epoch_seconds", "step_seconds", "steps_timed", "steps_per_epoch", "batch_size"}``."""
    import torch
    import torch.nn.functional as F
    from timm.optim import create_optimizer_v2

    model = load_checkpoint(Path(folder), expected_num_classes=num_classes).to(device).train()
    opt = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(0)
    images, labels, _ = load_images(ds, "train") if ds.kind == "glyphs" else (None, None, None)
    n = len(labels) if ds.kind == "glyphs" else int(ds.counts.get("train", 0))
    bs = max(2, min(int(batch_size), n))
    per_epoch = max(1, n // bs)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)  # GPU work is asynchronous
    if ds.kind == "glyphs":
        cfg = model.pretrained_cfg
        mean = torch.tensor(cfg.get("mean", DEFAULT_MEAN), device=device).view(1, -1, 1, 1)
        std = torch.tensor(cfg.get("std", DEFAULT_STD), device=device).view(1, -1, 1, 1)
        x_all, y_all = torch.from_numpy(np.ascontiguousarray(images)), torch.as_tensor(labels, dtype=torch.long)
        if x_all.ndim == 3:
            x_all = x_all[:, None]
        perm = torch.randperm(len(y_all), generator=g)
        batches = (((x_all[idx].to(device).float() / 255.0 - mean) / std, y_all[idx].to(device))
                   for idx in (perm[s * bs:(s + 1) * bs] for s in range(per_epoch)))
    else:
        batches = _batches(model, ds, g, epochs=1, batch_size=bs, device=device)
    todo, times = min(per_epoch, int(steps) + 1), []
    it = iter(batches)
    for _ in range(todo):
        t0 = time.perf_counter()
        xb, yb = next(it)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        if mean_logit_penalty:
            loss = loss + mean_logit_penalty * out.mean(dim=1).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    timed = times[1:] if len(times) > 1 else times  # the first step warms up allocators and kernels
    step = float(np.mean(timed))
    return {"epoch_seconds": step * per_epoch, "step_seconds": step, "steps_timed": len(timed),
            "steps_per_epoch": per_epoch, "batch_size": bs}


# ------------------------------------------------------------------------------------------ §3.3
def pair_penalty(logits, pairs: Sequence[tuple[int, int]], gauge: str = "raw"):
    """Σ over pairs (i, j) of |mean over the batch of f_i·f_j| (torch, differentiable). ``centered``:
    each sample's logits minus their mean over the classes first (the gauge softmax ignores)."""
    import torch

    f = logits - logits.mean(1, keepdim=True) if gauge == "centered" else logits
    i = torch.as_tensor([a for a, _ in pairs], device=f.device)
    j = torch.as_tensor([b for _, b in pairs], device=f.device)
    return (f[:, i] * f[:, j]).mean(0).abs().sum()


def _open_image(path: str, mode: str):
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert(mode)


def _batches(model, ds: PreparedDataset, g, *, epochs: int, batch_size: int, device: str):
    """Training batches (normalized images, labels) in a seeded order: fresh glyph renderings, or an
    ImageFolder's train split through timm's eval transform for the model (no augmentation)."""
    import torch

    if ds.kind == "glyphs":
        gcfg = GlyphConfig(**ds.params["glyphs"])
        renderer = GlyphRenderer.for_classes(glyph_classes(gcfg), gcfg.image_size)
        labels = torch.as_tensor(load_images(ds, "train")[1], dtype=torch.long)
        cfg = model.pretrained_cfg
        mean = torch.tensor(cfg.get("mean", DEFAULT_MEAN), device=device).view(1, -1, 1, 1)
        std = torch.tensor(cfg.get("std", DEFAULT_STD), device=device).view(1, -1, 1, 1)
        bs = max(2, min(batch_size, len(labels)))
        for _ in range(epochs):
            perm = torch.randperm(len(labels), generator=g)
            for s in range(0, len(labels) - bs + 1, bs):
                yb = labels[perm[s:s + bs]]
                yield (renderer.render(yb, g).to(device) - mean) / std, yb.to(device)
        return
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    cfg = model_data_config(model)
    mode = "L" if cfg["input_size"][0] == 1 else "RGB"
    folder = ImageFolder(ds.splits["train"], transform=create_transform(
        input_size=cfg["input_size"], interpolation=cfg.get("interpolation", "bilinear"), mean=cfg["mean"],
        std=cfg["std"], crop_pct=cfg.get("crop_pct", 1.0), crop_mode=cfg.get("crop_mode", "center"), is_training=False),
        loader=functools.partial(_open_image, mode=mode))
    loader = torch.utils.data.DataLoader(folder, batch_size=max(2, min(batch_size, len(folder))), shuffle=True,
                                         generator=g, drop_last=True)
    for _ in range(epochs):
        for xb, yb in loader:
            yield xb.to(device), yb.to(device)


def finetune_checkpoint(parent: CheckpointInfo, ds: PreparedDataset, folder: Path, *, pairs: Sequence[tuple[int, int]],
                        alpha: float, gauge: str, seed: int, epochs: int, max_steps: int, lr: float, batch_size: int,
                        device: str = "cpu", log=print) -> dict:
    """Fine-tune the parent with CE + alpha·pair_penalty (AdamW, constant lr, no weight decay; batches in
    a seeded order, so alpha = 0 gives the control on exactly the same batches). Written to ``folder``
    (skipped when it exists); returns its training record."""
    if alpha < 0:
        raise ValueError(f"regularization.alpha must be ≥ 0, got {alpha}")
    if not _done(folder):
        import torch
        import torch.nn.functional as F
        from timm.optim import create_optimizer_v2

        model = load_checkpoint(Path(parent.path), expected_num_classes=ds.n_classes).to(device)
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(int(seed))
        opt = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=0.0)
        step, t0, penalties = 0, time.perf_counter(), []
        model.train()
        for xb, yb in _batches(model, ds, g, epochs=epochs, batch_size=batch_size, device=device):
            if max_steps and step >= max_steps:
                break
            out = model(xb)
            pen = pair_penalty(out, pairs, gauge)
            loss = F.cross_entropy(out, yb) + alpha * pen
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            penalties.append(float(pen.detach()))
            step += 1
        model.eval().to("cpu")
        meta = {"parent_sha256": parent.sha256, "pairs": [list(map(int, p)) for p in pairs], "alpha": float(alpha),
                "gauge": gauge, "seed": int(seed), "epochs": int(epochs), "max_steps": int(max_steps), "steps": step,
                "lr": float(lr), "batch_size": int(batch_size), "seconds": time.perf_counter() - t0,
                "penalty_first": penalties[0] if penalties else None,
                "penalty_last": penalties[-1] if penalties else None}
        log(f"{parent.model}: fine-tune alpha={alpha} seed={seed}: {step} steps in {meta['seconds']:.1f}s, pair term "
            f"{meta['penalty_first']} → {meta['penalty_last']}")
        cfg = read_checkpoint_config(Path(parent.path))
        save_checkpoint(model, folder, model_args=cfg.get("model_args") or {}, extra={META: meta})
    return json.loads((folder / META).read_text())


def derived_checkpoint(store, name: str, num_classes: int) -> tuple[CheckpointInfo, dict] | None:
    """The current checkpoint of a derived model (a fine-tuned child registered in the store's
    `derived_models` by `regularized_checkpoints`), with its row; None when ``name`` is none."""
    if not store.has("derived_models", name):
        return None
    row = store.read("derived_models", name).iloc[0].to_dict()
    return describe(Path(row["path"]), model=name, origin=row["role"], source=row["parent_sha256"],
                    num_classes=num_classes), row
