"""The graph on a user's own data: ImageFolder splits and a local timm checkpoint folder."""

import os
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
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


def _project(tmp_path, seed: int, n_train: int, n_val: int, dependencies: str):
    """Train/val image folders, a random local checkpoint `mine` and a config using them; the config's path."""
    rng = np.random.default_rng(seed)
    _image_folder(tmp_path / "train", n_train, rng)
    _image_folder(tmp_path / "val", n_val, rng)
    spec = ModelSpec.from_dict({"name": "mine", "arch": "resnet10t", "model_args": {"channels": [8, 8, 16, 16]}})
    model = create_model(spec, num_classes=len(CLASSES), in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                         img_size=24)
    save_checkpoint(model, tmp_path / "ckpt", model_args=spec.model_args)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("dataset: {kind: imagefolder, name: fruitboats, splits: {train: train, val: val}}\n"
                   f"models: [{{name: mine, checkpoint: ckpt}}]\ndependencies: {dependencies}\n")
    return cfg


def test_imagefolder_dataset_with_local_checkpoint(tmp_path):
    cfg = _project(tmp_path, 0, 5, 3, "{lambdas: [0.5, 0.1]}")
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


def test_changed_added_removed_images_make_the_dataset_and_its_logits_stale(tmp_path):
    cfg = _project(tmp_path, 1, 4, 2, "{lambdas: [0.1], gauge_crosscheck: false}")
    data, instance = tmp_path / "data", dg.DagsterInstance.ephemeral()
    run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    store = ResultStore(data)
    old_id = store.query("SELECT dataset_id FROM datasets")["dataset_id"][0]
    # every val image replaced, and one more per class: the dataset, its logits and what reads them rerun
    shutil.rmtree(tmp_path / "val")
    _image_folder(tmp_path / "val", 3, np.random.default_rng(2))
    done = run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    assert [d[0] for d in done[:2]] == ["dataset_job", "model_job"]
    new = store.query("SELECT dataset_id, n_val FROM datasets WHERE dataset_id <> $d", {"d": old_id})
    assert new["n_val"].tolist() == [12]
    sets = store.query("SELECT n_samples FROM logit_sets WHERE dataset_id = $d AND split = 'val'",
                       {"d": new["dataset_id"][0]})
    assert sets["n_samples"].tolist() == [12]
    runs = store.query("SELECT DISTINCT dataset_id FROM latest_dependency_runs")["dataset_id"].tolist()
    assert runs == [new["dataset_id"][0]]
    assert run_pipeline(cfg, data, instance=instance, log=lambda *_: None) == []


def _cfg(tmp_path: Path, **splits):
    from neudep_assets.lib.config import DatasetConfig

    return DatasetConfig(kind="imagefolder", name="fruitboats", splits={k: str(v) for k, v in splits.items()})


def test_the_dataset_id_follows_each_image_path_size_time_and_content(tmp_path):
    from neudep_assets.lib.data.datasets import dataset_id_of

    _image_folder(tmp_path / "train", 2, np.random.default_rng(0))
    cfg = _cfg(tmp_path, train=tmp_path / "train")
    ids = [dataset_id_of(cfg)]
    assert dataset_id_of(cfg) == ids[0]  # stable while nothing changes
    img = tmp_path / "train" / "cat" / "0.png"
    st = img.stat()
    data = bytearray(img.read_bytes())
    data[-20] ^= 0xFF  # same size, same time, other content
    img.write_bytes(bytes(data))
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    ids.append(dataset_id_of(cfg))
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    ids.append(dataset_id_of(cfg))
    shutil.copy(img, tmp_path / "train" / "cat" / "9.png")  # added
    ids.append(dataset_id_of(cfg))
    (tmp_path / "train" / "dog" / "1.png").unlink()  # removed
    ids.append(dataset_id_of(cfg))
    assert len(set(ids)) == len(ids), ids


def test_symlinks_out_of_the_dataset_tree_are_refused_naming_them(tmp_path):
    from neudep_assets.lib.data import DatasetError
    from neudep_assets.lib.data.datasets import dataset_id_of

    _image_folder(tmp_path / "train", 2, np.random.default_rng(0))
    _image_folder(tmp_path / "elsewhere", 3, np.random.default_rng(1))
    cfg = _cfg(tmp_path, train=tmp_path / "train")
    inside = tmp_path / "train" / "cat" / "link.png"
    inside.symlink_to(tmp_path / "train" / "cat" / "0.png")  # a link within the tree is the same data
    dataset_id_of(cfg)
    outside = tmp_path / "train" / "dog" / "far.png"
    outside.symlink_to(tmp_path / "elsewhere" / "dog" / "0.png")
    with pytest.raises(DatasetError, match=r"far\.png is a symlink out of the dataset tree"):
        dataset_id_of(cfg)
    outside.unlink()
    shutil.rmtree(tmp_path / "train" / "boat")
    (tmp_path / "train" / "boat").symlink_to(tmp_path / "elsewhere" / "boat")
    with pytest.raises(DatasetError, match=r"class folder .*boat is a symlink"):
        dataset_id_of(cfg)


def test_a_class_folder_name_that_is_not_utf8_is_refused_naming_it(tmp_path):
    from neudep_assets.lib.data import DatasetError
    from neudep_assets.lib.data.datasets import dataset_id_of

    _image_folder(tmp_path / "train", 1, np.random.default_rng(0))
    bad = os.path.join(os.fsencode(tmp_path / "train"), b"caf\xe9")
    os.mkdir(bad)
    shutil.copy(tmp_path / "train" / "cat" / "0.png", os.fsdecode(bad) + "/0.png")
    with pytest.raises(DatasetError, match=r"class folder name is not valid UTF-8: .*caf\\xe9"):
        dataset_id_of(_cfg(tmp_path, train=tmp_path / "train"))
