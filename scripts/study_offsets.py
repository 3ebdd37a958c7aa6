#!/usr/bin/env python
"""Study: is the default's dependency share an artifact of a common logit offset? (issue 11)

    nice -n 10 python scripts/study_offsets.py --json study.json          # every variant (≈ 25 min, 2 cores)
    python scripts/study_offsets.py --only cnn300,cnn300_pen --json s.json
    python scripts/study_offsets.py --only '' --logits cnn1000=data/artifacts/logits/<key>-glyphs-<id>
                                                        # a store's logits (PREFIX-train.npz, PREFIX-val.npz)

Trains variants of the default recipe (neudep.yaml: resnet10t widths 32–256 for 4 epochs, the ViT for 8,
plain cross-entropy, 40 fresh renderings per class and epoch) outside Dagster, on the glyph dataset with
300 or 1000 classes, then for each: val accuracy, the offset diagnostics of the val logits
(lib/analysis/offsets.py), and the share of classes with a dependency (1–10 sources, Rel Err ≤ 20%; fit
on train, evaluated on val, as the pipeline) under the raw and the centered gauge at λ_rel 0.1 and 0.05,
with the median coefficient sum and the median offset-direction share of those dependencies. Prints a
Markdown table (the one in docs/results.md).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no OpenMP spin-waiting

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

W1 = [32, 64, 128, 256]  # the default CNN's widths
W_HALF = [16, 32, 64, 128]
CNN_TRAIN = dict(epochs=4, lr=3e-3, batch_size=128, weight_decay=0.05, label_smoothing=0.0, seed=0)
VIT_ARGS = dict(img_size=32, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=2)
VIT_TRAIN = dict(epochs=8, lr=2e-3, batch_size=256, weight_decay=0.05, label_smoothing=0.0, seed=0)
PEN = 0.05  # mean-logit penalty α of the *_pen variants

# fmt: off
VARIANTS = {
    "cnn300":          dict(n=300, arch="resnet10t", args=dict(channels=W1), train=CNN_TRAIN),
    "cnn300_pen":      dict(n=300, arch="resnet10t", args=dict(channels=W1), train={**CNN_TRAIN, "mean_logit_penalty": PEN}),
    "cnn300_ls":       dict(n=300, arch="resnet10t", args=dict(channels=W1), train={**CNN_TRAIN, "label_smoothing": 0.1}),
    "cnn300_nobias":   dict(n=300, arch="resnet10t", args=dict(channels=W1), train=CNN_TRAIN, bias=False),
    "cnn300_half":     dict(n=300, arch="resnet10t", args=dict(channels=W_HALF), train=CNN_TRAIN),
    "cnn300_half_pen": dict(n=300, arch="resnet10t", args=dict(channels=W_HALF), train={**CNN_TRAIN, "mean_logit_penalty": PEN}),
    "vit300":          dict(n=300, arch="vit_tiny_patch16_224", args=VIT_ARGS, train=VIT_TRAIN),
    "cnn1000_pen":     dict(n=1000, arch="resnet10t", args=dict(channels=W1), train={**CNN_TRAIN, "mean_logit_penalty": PEN}),
    "cnn1000":         dict(n=1000, arch="resnet10t", args=dict(channels=W1), train=CNN_TRAIN),
    "vit1000":         dict(n=1000, arch="vit_tiny_patch16_224", args=VIT_ARGS, train=VIT_TRAIN),
}
# fmt: on
DEFAULT = [k for k in VARIANTS if k not in ("cnn1000", "vit1000")]  # those two are the default demo's models
LAMBDAS = (0.1, 0.05)


def analyse_gauges(train_logits, val_logits, val_labels, lambdas=LAMBDAS) -> dict:
    """Share with a dependency (and what those dependencies are made of) under both gauges."""
    import numpy as np

    from neudep_assets.lib.analysis import analyse, second_moment, summarize
    from neudep_assets.lib.analysis.offsets import LOGIT_GAUGES, apply_gauge, gauge_moment, offset_direction_share

    C_raw = second_moment(train_logits)
    out = {}
    for gauge in LOGIT_GAUGES:
        C = gauge_moment(C_raw, gauge)
        res = analyse(C, list(lambdas), eval_source=apply_gauge(val_logits, gauge), eval_labels=val_labels)
        summ = summarize(res.per_target, list(lambdas))
        coef = res.path.coef  # (λ, targets, n)
        # share of each reconstruction along the offset direction (0 under the centered gauge)
        dir_share = offset_direction_share(C, coef)
        for li, lam in enumerate(lambdas):
            d = res.per_target[res.per_target["lambda_index"] == li].set_index("target_class")
            dep = d[(d["n_sources"] >= 1) & (d["n_sources"] <= 10) & (d["rel_err"] <= 0.2)].index.to_numpy()
            pos = np.searchsorted(np.asarray(res.path.targets), dep)
            out[f"{gauge}@{lam}"] = {
                "share": float(summ.loc[li, "share_with_dependency"]),
                "median_sources": float(summ.loc[li, "median_sources"]),
                "median_rel_err": float(summ.loc[li, "median_rel_err"]),
                "coef_sum_median": float(np.median(coef[li, pos].sum(axis=1))) if len(pos) else float("nan"),
                "offset_dir_share_median": float(np.nanmedian(dir_share[li, pos])) if len(pos) else float("nan"),
                "pos_acc_loss_median": float(summ.loc[li, "pos_acc_loss_pts_dep_median"]),
            }
    return out


def run_variant(name: str, v: dict, data_root: Path, threads: int) -> dict:
    import numpy as np
    import torch

    from neudep_assets.lib import data as glyphs
    from neudep_assets.lib import models
    from neudep_assets.lib.analysis.offsets import logit_stats
    from neudep_assets.lib.models.checkpoints import DEFAULT_MEAN, DEFAULT_STD

    torch.set_num_threads(threads)
    gcfg = glyphs.GlyphConfig(n_classes=v["n"], train_per_class=40, val_per_class=20, seed=0)
    paths = glyphs.build_splits(gcfg, data_root / f"glyphs{v['n']}")
    xtr, ytr = glyphs.load_split(paths["train"])
    xv, yv = glyphs.load_split(paths["val"])
    renderer = glyphs.GlyphRenderer.for_classes(glyphs.glyph_classes(gcfg), gcfg.image_size)
    spec = models.ModelSpec.from_dict(dict(name=name, arch=v["arch"], model_args=v["args"], train=v["train"]))
    model = models.create_model(spec, v["n"], 1, mean=DEFAULT_MEAN, std=DEFAULT_STD, img_size=gcfg.image_size)
    if not v.get("bias", True):
        head = model.get_classifier()
        head.bias = None  # a classifier without bias (the offset can still come from the weights)
    print(f"\n== {name}: {v['n']} classes, {spec.arch} {spec.model_args} train={v['train']} "
          f"bias={v.get('bias', True)}", flush=True)
    res = models.train_classifier(model, train_images=xtr, train_labels=ytr, val_images=xv, val_labels=yv,
                                  sampler=renderer.render, mean=DEFAULT_MEAN, std=DEFAULT_STD,
                                  log=lambda s: print("  " + s, flush=True),
                                  **models.resolve_train_config(spec.train))
    ftr = models.compute_logits(model, xtr, mean=DEFAULT_MEAN, std=DEFAULT_STD)
    fv = models.compute_logits(model, xv, mean=DEFAULT_MEAN, std=DEFAULT_STD)
    t0 = time.perf_counter()
    gauges = analyse_gauges(ftr, fv, yv)
    row = dict(name=name, n_classes=v["n"], arch=v["arch"], model_args=v["args"], train=v["train"],
               bias=v.get("bias", True), val_acc=float((fv.argmax(1) == yv).mean()), train_seconds=res["seconds"],
               analysis_seconds=time.perf_counter() - t0, stats=logit_stats(fv), gauges=gauges)
    print(f"-> {name}: " + json.dumps({k: row[k] for k in ("val_acc", "train_seconds")}) + " "
          + json.dumps(row["stats"]) + "\n   " + json.dumps(gauges), flush=True)
    return row


def from_logits(name: str, prefix: str) -> dict:
    """The same row for logits already computed (e.g. by the pipeline: PREFIX-train.npz / PREFIX-val.npz)."""
    import numpy as np

    from neudep_assets.lib.analysis.offsets import logit_stats

    tr, va = (np.load(f"{prefix}-{split}.npz") for split in ("train", "val"))
    fv, yv = va["logits"], va["labels"]
    t0 = time.perf_counter()
    gauges = analyse_gauges(tr["logits"], fv, yv)
    row = dict(name=name, n_classes=int(fv.shape[1]), source=prefix, val_acc=float((fv.argmax(1) == yv).mean()),
               train_seconds=float("nan"), analysis_seconds=time.perf_counter() - t0, stats=logit_stats(fv),
               gauges=gauges)
    print(f"-> {name}: {json.dumps(row['stats'])}\n   {json.dumps(gauges)}", flush=True)
    return row


def table(rows) -> str:
    """The study's Markdown table."""
    head = ("| variant | classes | val acc | mean logit | offset share | with a dependency, raw λ_rel 0.1 / 0.05 "
            "| centered 0.1 / 0.05 | raw deps at 0.1: coef sum, offset-dir share | train s |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        g, s = r["gauges"], r["stats"]
        lines.append(
            f"| {r['name']} | {r['n_classes']} | {100 * r['val_acc']:.1f}% | {s['mean_logit_mean']:.2f} "
            f"| {100 * s['offset_share']:.1f}% | {100 * g['raw@0.1']['share']:.1f}% / {100 * g['raw@0.05']['share']:.1f}% "
            f"| {100 * g['centered@0.1']['share']:.1f}% / {100 * g['centered@0.05']['share']:.1f}% "
            f"| {g['raw@0.1']['coef_sum_median']:.2f}, {g['raw@0.1']['offset_dir_share_median']:.2f} "
            f"| {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(DEFAULT), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=None, help="glyph data root, reused between runs (default: a temp folder)")
    ap.add_argument("--logits", action="append", default=[], help="NAME=PREFIX: analyse stored logits too")
    ap.add_argument("--json", default=None, help="append each variant's row to this JSON file as it finishes")
    args = ap.parse_args(argv)
    data_root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="neudep-study-"))
    names = [k for k in args.only.split(",") if k]
    extra = dict(kv.split("=", 1) for kv in args.logits)
    unknown = [k for k in names if k not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    rows = []
    out = Path(args.json) if args.json else None
    if out and out.is_file():
        rows = [r for r in json.loads(out.read_text()) if r["name"] not in names and r["name"] not in extra]
    for name, prefix in extra.items():
        rows.append(from_logits(name, prefix))
    for name in names:
        rows.append(run_variant(name, VARIANTS[name], data_root, args.threads))
        if out:
            out.write_text(json.dumps(rows, indent=1))
    if out:
        out.write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
