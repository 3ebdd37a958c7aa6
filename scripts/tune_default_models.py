#!/usr/bin/env python
"""Dev tool: train candidate default models on the default glyph dataset; print accuracy and time.

    python scripts/tune_default_models.py                      # the recommended defaults
    python scripts/tune_default_models.py --only cnn_os16,vit_mlp4 --epochs 3
    python scripts/tune_default_models.py --add '{"name": "x", "arch": "resnet10t", "model_args": {...}, "train": {...}}'

Builds (or reuses) the default glyph splits under --data (default: a temp folder), trains each
candidate with fresh samples every epoch, prints per-epoch loss / val accuracy / seconds, and a
summary with the feature dim d, parameters, val accuracy and wall time. Timings depend on the load
of the machine: run it on a quiet one (`uptime`) and compare per-epoch seconds; the CPU seconds
(process time, all threads) divided by the thread count estimate a quiet machine's wall time.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no OpenMP spin-waiting

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEAN, STD = (0.2,), (0.25,)  # glyph pixels: mean ~0.21, std ~0.23 (white on dark)

# fmt: off
CANDIDATES = {
    # recommended CNN: ResNet-10-T (deep 3x3 stem, stride 2 + max-pool: 32 -> 8 px), BasicBlock [1,1,1,1]
    "cnn": dict(arch="resnet10t", model_args=dict(channels=[32, 64, 128, 256]),
                train=dict(epochs=4, lr=3e-3, batch_size=128, weight_decay=0.05, seed=0, mean_logit_penalty=0.05)),
    # recommended transformer: plain ViT, patch 8 on 32 px (16 tokens + cls), width 128, depth 4, MLP x2
    "vit": dict(arch="vit_tiny_patch16_224",
                model_args=dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=2),
                train=dict(epochs=8, lr=2e-3, batch_size=256, weight_decay=0.05, seed=0)),
    # --- alternatives that were measured
    "cnn_os16": dict(arch="resnet10t", model_args=dict(channels=[32, 64, 128, 256], output_stride=16),
                     train=dict(epochs=6, lr=3e-3, batch_size=128, weight_decay=0.05, seed=0)),
    "cnn_os8": dict(arch="resnet10t", model_args=dict(channels=[32, 64, 128, 256], output_stride=8),
                    train=dict(epochs=6, lr=3e-3, batch_size=128, weight_decay=0.05, seed=0)),
    "vit_mlp4": dict(arch="vit_tiny_patch16_224",
                     model_args=dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4),
                     train=dict(epochs=12, lr=1e-3, batch_size=128, weight_decay=0.05, seed=0)),
}
# fmt: on
DEFAULT = ("cnn", "vit")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(DEFAULT), help=f"comma list of {', '.join(CANDIDATES)}")
    ap.add_argument("--add", action="append", default=[], help="extra candidate as JSON (ModelSpec fields)")
    ap.add_argument("--epochs", type=int, default=None, help="override epochs of every candidate")
    ap.add_argument("--set", action="append", default=[], help="train override KEY=JSON, e.g. lr=0.002")
    ap.add_argument("--n-classes", type=int, default=300)
    ap.add_argument("--train-per-class", type=int, default=60)
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--fixed", action="store_true", help="train on the fixed train split (no fresh samples)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mean", type=float, default=MEAN[0], help="normalization mean (grey)")
    ap.add_argument("--std", type=float, default=STD[0], help="normalization std (grey)")
    ap.add_argument("--data", default=None, help="data root (default: a temp folder)")
    ap.add_argument("--json", default=None, help="write the summary as JSON here")
    args = ap.parse_args(argv)

    import tempfile

    import numpy as np
    import torch

    from neudep_assets.lib import data as glyphs
    from neudep_assets.lib import models

    torch.set_num_threads(args.threads)
    mean, std = (args.mean,), (args.std,)
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="neudep-tune-"))
    gcfg = glyphs.GlyphConfig(n_classes=args.n_classes, train_per_class=args.train_per_class,
                              val_per_class=args.val_per_class)
    t0 = time.perf_counter()
    paths = glyphs.build_splits(gcfg, data)
    t_data = time.perf_counter() - t0
    xtr, ytr = glyphs.load_split(paths["train"])
    xv, yv = glyphs.load_split(paths["val"])
    t0 = time.perf_counter()
    renderer = glyphs.GlyphRenderer.for_classes(glyphs.glyph_classes(gcfg), gcfg.image_size)
    t_renderer = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    renderer.render(torch.as_tensor(ytr), g)
    t_render = time.perf_counter() - t0
    print(f"data: {len(ytr)} train / {len(yv)} val, {args.n_classes} classes; splits {t_data:.1f}s, "
          f"renderer {t_renderer:.1f}s, one epoch of fresh samples {t_render:.2f}s; "
          f"pixel mean {xtr.mean() / 255:.3f} std {xtr.std() / 255:.3f}", flush=True)

    cands = {k: CANDIDATES[k] for k in args.only.split(",") if k}
    for extra in args.add:
        d = json.loads(extra)
        cands[d.pop("name")] = d
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v)

    summary = []
    for name, c in cands.items():
        train = {**c.get("train", {}), **overrides}
        if args.epochs:
            train["epochs"] = args.epochs
        if args.fixed:
            train["fresh_samples"] = False
        spec = models.ModelSpec.from_dict(dict(name=name, arch=c["arch"], model_args=c.get("model_args", {}),
                                               train=train))
        model = models.create_model(spec, args.n_classes, 1, mean=mean, std=std, img_size=gcfg.image_size)
        n_params = sum(p.numel() for p in model.parameters())
        d = models.num_features(model)
        print(f"\n== {name}: {spec.arch} {spec.model_args} d={d} params={n_params / 1e6:.2f}M train={train}",
              flush=True)
        kw = models.resolve_train_config(spec.train)
        cpu0 = time.process_time()
        res = models.train_classifier(
            model, train_images=xtr, train_labels=ytr, val_images=xv, val_labels=yv, sampler=renderer.render,
            mean=mean, std=std, log=lambda s: print("  " + s, flush=True), **kw)
        cpu = time.process_time() - cpu0
        per_epoch = [h["seconds"] for h in res["history"]]
        row = dict(name=name, arch=spec.arch, model_args=spec.model_args, train=train, d=d,
                   params=n_params, val_acc=res["val_acc"], seconds=res["seconds"], cpu_seconds=cpu,
                   epoch_seconds_median=float(np.median(per_epoch)), history=res["history"])
        summary.append(row)
        print(f"-> {name}: val acc {res['val_acc']:.4f}  {res['seconds']:.0f}s wall, {cpu:.0f}s cpu "
              f"({row['epoch_seconds_median']:.1f}s/epoch median)", flush=True)

    print("\nsummary")
    print(f"{'name':14s} {'d':>4s} {'params':>8s} {'epochs':>6s} {'val acc':>8s} {'s':>6s} {'cpu s':>6s} {'s/ep':>6s}")
    for r in summary:
        print(f"{r['name']:14s} {r['d']:4d} {r['params'] / 1e6:7.2f}M {r['train'].get('epochs'):6d} "
              f"{r['val_acc']:8.4f} {r['seconds']:6.0f} {r['cpu_seconds']:6.0f} {r['epoch_seconds_median']:6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
