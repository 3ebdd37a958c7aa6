"""The pipeline's compute against bare baselines, with the peak memory of each (a script, not a test).

    python bench/pipeline.py                      # all parts at the default's sizes
    python bench/pipeline.py --parts dependencies --n 1000

Every measurement runs in a fresh process (spawn), so that each peak RSS (ru_maxrss) is its own.
Printed ratios come from one run of this script: absolute seconds drift on shared machines.

* dependencies: the ``dependencies`` asset's compute, :func:`analyse` (solve + Table-1 metrics of the
  lasso and of the relaxed refit + redundancy, Eq. 5, screening), against the solve alone
  (:func:`solve_path`), on synthetic logits of a random low-rank head (n classes, d features,
  --samples fit and --eval-samples evaluation samples; the default's split sizes at n = 1000).
* logits: :func:`compute_logits` against a bare timm forward loop (same model, images, batch size),
  for the default CNN at 32 px and a 224-px EfficientNet-B0 (random weights: no download).
* logits-asset: the ``logits`` asset's own path, :func:`split_logits` with the automatic batch size,
  for a random-init EfficientNet-B0 saved as a timm folder (config.json + model.safetensors) over a
  generated ImageFolder of --folder-images random 224-px JPEGs, against a bare loop (timm transform,
  torchvision ImageFolder, DataLoader, forward) at the batch size the automatic rule chose.
* training: :func:`train_classifier` (one epoch) against a bare torch loop with the same model,
  batch, AdamW optimizer and loss.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _data(n, d, N, Ne, seed=0):
    from neudep_assets.lib.analysis import second_moment

    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, n)) / np.sqrt(d)
    bias = 0.3 * rng.normal(size=n)

    def logits(N):
        y = rng.integers(0, n, N)
        H = np.maximum(rng.normal(size=(N, d)), 0) + 2.0 * W[:, y].T
        return (H @ W + bias).astype(np.float32), y

    F, _ = logits(N)
    E, ye = logits(Ne)
    return second_moment(F), E, ye


def _dependencies(what, n, d, N, Ne, lams):
    from neudep_assets.lib.analysis import analyse
    from neudep_assets.lib.covlasso import solve_path

    C, E, ye = _data(n, d, N, Ne)
    analyse(C[:40, :40], [0.1], eval_source=E[:50, :40], eval_labels=ye[:50] % 40)  # load numba's cache
    t0 = time.perf_counter()
    if what == "solve":
        solve_path(C, lams)
    else:
        analyse(C, lams, eval_source=E, eval_labels=ye)
    return time.perf_counter() - t0, _rss_gb()


def _model(arch, img, n_classes, model_args):
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=n_classes, in_chans=3, **model_args)


def _images(N, img, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(N, 3, img, img), dtype=np.uint8)


def _logits(what, arch, img, N, batch, model_args):
    import torch

    from neudep_assets.lib.models.logits import compute_logits

    torch.manual_seed(0)
    model = _model(arch, img, 1000, model_args).eval()
    x = _images(N, img)
    t0 = time.perf_counter()
    if what == "neudep":
        compute_logits(model, x, mean=MEAN, std=STD, batch_size=batch)
    else:
        mean = torch.tensor(MEAN).view(1, -1, 1, 1)
        std = torch.tensor(STD).view(1, -1, 1, 1)
        out = []
        with torch.no_grad():
            for s in range(0, N, batch):
                xb = (torch.from_numpy(x[s:s + batch]).float() / 255.0 - mean) / std
                out.append(model(xb).numpy())
        np.concatenate(out)
    return time.perf_counter() - t0, _rss_gb()


def _make_folder_and_checkpoint(root, n_images, n_classes=10, seed=0):
    """An ImageFolder of random 224-px JPEGs and a random-init efficientnet_b0 timm folder under ``root``."""
    from pathlib import Path

    import torch
    from PIL import Image

    from neudep_assets.lib.models import save_checkpoint

    root = Path(root)
    rng = np.random.default_rng(seed)
    for k in range(n_images):
        d = root / "images" / f"class{k % n_classes:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(d / f"{k}.jpg", quality=90)
    torch.manual_seed(seed)
    save_checkpoint(_model("efficientnet_b0", 224, n_classes, {}), root / "ckpt", model_args={})
    return str(root / "images"), str(root / "ckpt"), n_classes


def _logits_asset(what, folder, ckpt, n_classes, batch):
    """ours: split_logits (the asset's call) with the automatic batch size; bare: a plain loop at ``batch``.
    Returns (seconds, peak GB, batch size used)."""
    from pathlib import Path

    from neudep_assets.lib.data.datasets import PreparedDataset
    from neudep_assets.lib.models.checkpoints import CheckpointInfo, split_logits

    names = tuple(sorted(p.name for p in Path(folder).iterdir()))
    t0 = time.perf_counter()
    if what == "neudep":
        ds = PreparedDataset(dataset_id="bench", kind="imagefolder", class_names=names, class_labels=names,
                             splits={"val": folder})
        info = CheckpointInfo(model="bench", sha256="", path=ckpt, origin="local", source=ckpt,
                              arch="efficientnet_b0", num_classes=n_classes, num_features=0, n_params=0)
        lines = []
        split_logits(info, ds, "val", device="cpu", batch_size=None, log=lines.append)
        batch = int(next(w for line in lines if line.startswith("logits in batches of")
                         for w in line.split()[4:5]))
    else:
        import safetensors.torch
        import timm
        import torch
        from timm.data import create_transform, resolve_data_config
        from torchvision.datasets import ImageFolder

        model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=n_classes)
        model.load_state_dict(safetensors.torch.load_file(str(Path(ckpt) / "model.safetensors")))
        model.eval()
        ds = ImageFolder(folder, transform=create_transform(**resolve_data_config({}, model=model)))
        with torch.no_grad():
            out = [model(xb).numpy() for xb, _ in torch.utils.data.DataLoader(ds, batch_size=batch)]
        np.concatenate(out)
    return time.perf_counter() - t0, _rss_gb(), batch


def _train(what, arch, img, N, batch, model_args):
    import torch
    import torch.nn.functional as F
    from timm.optim import create_optimizer_v2

    from neudep_assets.lib.models.training import train_classifier

    torch.manual_seed(0)
    n_classes = 100
    model = _model(arch, img, n_classes, model_args)
    x = _images(N, img)
    y = np.random.default_rng(1).integers(0, n_classes, N)
    t0 = time.perf_counter()
    if what == "neudep":
        train_classifier(model, train_images=x, train_labels=y, val_images=x[:batch], val_labels=y[:batch],
                         epochs=1, lr=1e-3, batch_size=batch, weight_decay=0.05, seed=0, mean=MEAN, std=STD,
                         log=None, label_smoothing=0.0, warmup_epochs=0.0)
    else:
        opt = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
        mean = torch.tensor(MEAN).view(1, -1, 1, 1)
        std = torch.tensor(STD).view(1, -1, 1, 1)
        X, Y = torch.from_numpy(x), torch.from_numpy(y)
        model.train()
        perm = torch.randperm(N)
        for s in range(0, N, batch):
            idx = perm[s:s + batch]
            xb = (X[idx].float() / 255.0 - mean) / std
            loss = F.cross_entropy(model(xb), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0, _rss_gb()


def _in_child(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _pair(label, fn, ours, bare, *args):
    t1, m1 = _in_child(fn, ours, *args)
    t0, m0 = _in_child(fn, bare, *args)
    print(f"{label:<44} {t1:8.2f} s {m1:6.2f} GB | {bare:<8} {t0:8.2f} s {m0:6.2f} GB | ratio {t1 / t0:5.2f}×",
          flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["dependencies", "logits", "training"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--samples", type=int, default=40000, help="fit samples (the default: 40 per class)")
    ap.add_argument("--eval-samples", type=int, default=20000, help="eval samples (the default: 20 per class)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05, 0.02])
    ap.add_argument("--images", type=int, default=2048, help="images for the logits / training parts (32 px)")
    ap.add_argument("--images-224", type=int, default=256, help="images for the 224-px model")
    ap.add_argument("--folder-images", type=int, default=300, help="224-px JPEGs of the logits-asset part")
    a = ap.parse_args(argv)
    print(f"{'what':<44} {'ours':>10} {'peak':>9} | {'baseline':<8} {'':>10} {'peak':>9} |")
    if "dependencies" in a.parts:
        _pair(f"dependencies n={a.n}, {len(a.lambdas)} λ (analyse)", _dependencies, "analyse", "solve",
              a.n, a.d, a.samples, a.eval_samples, a.lambdas)
    cnn = ("resnet10t", 32, {"channels": [32, 64, 128, 256]})
    eff = ("efficientnet_b0", 224, {})
    if "logits" in a.parts:
        _pair(f"logits cnn 32 px, {a.images} images, batch 512", _logits, "neudep", "timm", *cnn[:2], a.images,
              512, cnn[2])
        _pair(f"logits efficientnet_b0 224 px, {a.images_224} img, b 64", _logits, "neudep", "timm", *eff[:2],
              a.images_224, 64, eff[2])
    if "logits-asset" in a.parts:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="neudep-bench-") as tmp:
            folder, ckpt, k = _make_folder_and_checkpoint(tmp, a.folder_images)
            t1, m1, b = _in_child(_logits_asset, "neudep", folder, ckpt, k, None)
            t0, m0, _ = _in_child(_logits_asset, "bare", folder, ckpt, k, b)
        print(f"{f'logits asset efficientnet_b0 224 px, {a.folder_images} JPEGs, auto b {b}':<44} {t1:8.2f} s "
              f"{m1:6.2f} GB | {'timm':<8} {t0:8.2f} s {m0:6.2f} GB | ratio {t1 / t0:5.2f}×", flush=True)
    if "training" in a.parts:
        _pair(f"training cnn 32 px, 1 epoch of {a.images}, batch 128", _train, "neudep", "torch", *cnn[:2],
              a.images, 128, cnn[2])


if __name__ == "__main__":
    main()
