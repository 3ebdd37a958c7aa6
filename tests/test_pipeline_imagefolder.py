"""The graph on a user's own data: ImageFolder splits and a local timm checkpoint folder."""

from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image

from neudep_assets.cli import run_pipeline
from neudep_assets.lib.models import ModelSpec, create_model, save_checkpoint
from neudep_assets.lib.store import ResultStore

CLASSES = ("apple", "boat", "cat", "dog")


def _image_folder(root: Path, per_class: int, rng) -> None:
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 60, size=(24, 24, 3), dtype=np.uint8)
            pixels[:, :, k % 3] += np.uint8(120 + 20 * k)  # a class-dependent colour
            Image.fromarray(pixels).save(root / name / f"{j}.png")


def test_imagefolder_dataset_with_local_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    _image_folder(tmp_path / "train", 5, rng)
    _image_folder(tmp_path / "val", 3, rng)
    spec = ModelSpec.from_dict({"name": "mine", "arch": "resnet10t", "model_args": {"channels": [8, 8, 16, 16]}})
    model = create_model(spec, num_classes=len(CLASSES), in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                         img_size=24)
    save_checkpoint(model, tmp_path / "ckpt", model_args=spec.model_args)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("dataset: {kind: imagefolder, name: fruitboats, splits: {train: train, val: val}}\n"
                   "models: [{name: mine, checkpoint: ckpt}]\n"
                   "dependencies: {lambdas: [0.5, 0.1]}\n")
    data = tmp_path / "data"
    run_pipeline(cfg, data, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    store = ResultStore(data)
    sets = store.query("SELECT split, n_samples FROM logit_sets ORDER BY split")
    assert sets.to_dict("records") == [{"split": "train", "n_samples": 20}, {"split": "val", "n_samples": 12}]
    names = store.query("SELECT name FROM classes ORDER BY class_index")["name"].tolist()
    assert names == list(CLASSES)
    ids = np.load(store.query("SELECT path FROM logit_sets WHERE split = 'val'")["path"][0])["sample_ids"]
    assert sorted(ids)[0] == "apple/0.png"
    per_gauge = store.query("SELECT logit_gauge, count(*) AS n FROM dependency_summary GROUP BY ALL")
    # the raw analysis over 2 λ, and its centered cross-check at one λ
    assert dict(zip(per_gauge["logit_gauge"], per_gauge["n"])) == {"raw": 2 * len(CLASSES), "centered": len(CLASSES)}
    origin = store.query("SELECT origin, path FROM checkpoints")
    assert origin["origin"][0] == "local" and origin["path"][0] == str((tmp_path / "ckpt").resolve())
