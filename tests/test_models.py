"""Model specs, creation, checkpoint I/O (timm folder format, safetensors only) and training."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective only if torch is not imported yet

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from neudep_assets.lib import models
from neudep_assets.lib.models import training  # noqa: E402
from neudep_assets.lib.models import compute_logits  # noqa: E402
from neudep_assets.lib.models import CheckpointError, ModelSpec  # noqa: E402

MEAN, STD = (0.2,), (0.25,)
S = 16
CNN = dict(name="cnn", arch="resnet10t", model_args={"channels": [8, 8, 16, 16], "stem_width": 8},
           train={"epochs": 2, "lr": 3e-3, "batch_size": 16, "weight_decay": 0.01, "seed": 3})
VIT = dict(name="vit", arch="vit_tiny_patch16_224",
           model_args={"img_size": S, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
           train={"seed": 0})


def _cnn(num_classes=5, seed=None):
    d = dict(CNN)
    if seed is not None:
        d["train"] = {**d["train"], "seed": seed}
    spec = ModelSpec.from_dict(d)
    return spec, models.create_model(spec, num_classes, 1, mean=MEAN, std=STD, img_size=S)


def _images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, S, S), dtype=np.uint8)


def _sd_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------- spec


def test_spec_from_dict_roundtrip():
    spec = ModelSpec.from_dict(CNN)
    assert spec.name == "cnn" and spec.arch == "resnet10t" and spec.trains and spec.seed == 3
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    ck = ModelSpec.from_dict({"name": "mine", "checkpoint": "/some/folder"})
    assert ck.checkpoint == "/some/folder" and not ck.trains
    hub = ModelSpec.from_dict({"name": "r50", "arch": "resnet50.a1_in1k", "pretrained": True})
    assert hub.pretrained and not hub.trains


@pytest.mark.parametrize("bad, words", [
    ({"name": "a", "arch": "resnet18", "colour": 1}, ["colour"]),
    ({"arch": "resnet18"}, ["name"]),
    ({"name": "", "arch": "resnet18"}, ["name"]),
    ({"name": "a/b", "arch": "resnet18"}, ["a/b"]),
    ({"name": "a", "checkpoint": "/x", "pretrained": True}, ["checkpoint", "pretrained"]),
    ({"name": "a", "checkpoint": "/x", "arch": "resnet18"}, ["checkpoint", "arch"]),
    ({"name": "a"}, ["arch", "checkpoint"]),
    ({"name": "a", "arch": "resnet18", "pretrained": "yes"}, ["pretrained", "yes"]),
    ({"name": "a", "arch": "resnet18", "model_args": [1]}, ["model_args"]),
    ({"name": "a", "arch": "resnet18", "model_args": {"num_classes": 3}}, ["num_classes"]),
    ({"name": "a", "arch": "resnet18", "train": {"epocs": 3}}, ["epocs"]),
    ({"name": "a", "arch": "resnet18", "train": {"epochs": 0}}, ["epochs"]),
    ({"name": "a", "arch": "resnet18", "train": {"lr": "fast"}}, ["lr", "fast"]),
    ({"name": "a", "arch": "resnet18", "train": {"augment": "flip"}}, ["augment", "flip"]),
    ({"name": "a", "arch": "resnet18", "pretrained": True, "train": {"epochs": 3}}, ["epochs"]),
    ("resnet18", ["mapping"]),
])
def test_spec_rejects_bad_entries(bad, words):
    with pytest.raises(ValueError) as e:
        ModelSpec.from_dict(bad)
    for w in words:
        assert w in str(e.value)


# ----------------------------------------------------------------------------------------- create


def test_create_model_seeded_and_configured():
    spec, m1 = _cnn()
    _, m2 = _cnn()
    _, m3 = _cnn(seed=4)
    assert _sd_equal(m1, m2)
    assert not _sd_equal(m1, m3)
    assert models.num_features(m1) == 16 and models.num_classes_of(m1) == 5
    cfg = models.model_data_config(m1)
    assert cfg["input_size"] == (1, S, S)
    assert tuple(cfg["mean"]) == MEAN and tuple(cfg["std"]) == STD
    # the global RNG is left alone
    torch.manual_seed(123)
    a = torch.rand(1)
    torch.manual_seed(123)
    _cnn()
    assert torch.equal(torch.rand(1), a)


def test_create_model_unknown_arch():
    spec = ModelSpec.from_dict({"name": "x", "arch": "xyz_not_a_model"})
    with pytest.raises(ValueError, match="unknown timm architecture 'xyz_not_a_model'"):
        models.create_model(spec, 5, 1)


def test_create_model_bad_model_args_named():
    spec = ModelSpec.from_dict({"name": "x", "arch": "resnet10t", "model_args": {"wings": 2}})
    with pytest.raises(ValueError, match="resnet10t"):
        models.create_model(spec, 5, 1)


def test_pretrained_offline_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)
    spec = ModelSpec.from_dict({"name": "r18", "arch": "resnet18.a1_in1k", "pretrained": True})
    with pytest.raises(models.PretrainedWeightsUnavailable) as e:
        models.create_model(spec, 10, 3)
    msg = str(e.value)
    assert "resnet18.a1_in1k" in msg and "cannot be downloaded" in msg and "checkpoint" in msg
    assert isinstance(e.value, CheckpointError)


def test_vit_creation_and_features():
    spec = ModelSpec.from_dict(VIT)
    m = models.create_model(spec, 7, 1, mean=MEAN, std=STD)
    assert models.num_features(m) == 16
    assert models.model_data_config(m)["input_size"] == (1, S, S)
    assert m(torch.zeros(2, 1, S, S)).shape == (2, 7)


def test_img_size_reaches_fixed_size_archs_only():
    vit = dict(VIT, model_args={k: v for k, v in VIT["model_args"].items() if k != "img_size"})
    m = models.create_model(ModelSpec.from_dict(vit), 3, 1, mean=MEAN, std=STD, img_size=S)
    assert m(torch.zeros(1, 1, S, S)).shape == (1, 3)
    assert models.model_data_config(m)["input_size"] == (1, S, S)
    _, cnn = _cnn()  # resnet takes no img_size: created without it
    assert cnn.eval()(torch.zeros(1, 1, 24, 24)).shape == (1, 5)


# ------------------------------------------------------------------------------------- checkpoint


def test_save_load_roundtrip_identical_logits(tmp_path):
    spec, m = _cnn()
    # non-trivial batch-norm statistics
    m.train()
    with torch.no_grad():
        m(torch.randn(32, 1, S, S) * 2 + 1)
    m.eval()
    folder = tmp_path / "ck" / "cnn"
    sha = models.save_checkpoint(m, folder, model_args=spec.model_args,
                                 extra={"label_names": [f"c{i}" for i in range(5)], "origin": "test",
                                        "neudep_training.json": {"val_acc": 0.5}})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "neudep_training.json"]
    assert not any(p.suffix in (".bin", ".pth", ".pt", ".pkl") for p in folder.rglob("*"))
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert sha == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert sha == models.weights_sha256(folder)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "resnet10t" and cfg["num_classes"] == 5
    assert cfg["pretrained_cfg"]["mean"] == list(MEAN) and cfg["pretrained_cfg"]["std"] == list(STD)
    assert cfg["label_names"][0] == "c0" and cfg["neudep"] == {"origin": "test"}
    assert json.loads((folder / "neudep_training.json").read_text()) == {"val_acc": 0.5}

    loaded = models.load_checkpoint(folder, expected_num_classes=5)
    assert not loaded.training
    assert _sd_equal(m, loaded)
    dc = models.model_data_config(loaded)
    assert tuple(dc["mean"]) == MEAN and tuple(dc["std"]) == STD and dc["input_size"] == (1, S, S)
    x = _images()
    a = compute_logits(m, x, mean=MEAN, std=STD)
    b = compute_logits(loaded, x, mean=dc["mean"], std=dc["std"])
    np.testing.assert_array_equal(a, b)
    # timm's own loader reads the folder too
    via_timm = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert _sd_equal(m, via_timm)


def test_sha_stable_and_changes_with_weights(tmp_path):
    spec, m = _cnn()
    sha1 = models.save_checkpoint(m, tmp_path / "a", model_args=spec.model_args)
    sha2 = models.save_checkpoint(m, tmp_path / "b", model_args=spec.model_args)
    assert sha1 == sha2
    with torch.no_grad():
        m.fc.bias[0] += 1.0
    sha3 = models.save_checkpoint(m, tmp_path / "a", model_args=spec.model_args)  # overwrite in place
    assert sha3 != sha1 and models.weights_sha256(tmp_path / "a") == sha3
    assert torch.equal(models.load_checkpoint(tmp_path / "a").fc.bias, m.fc.bias)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_vit_roundtrip(tmp_path):
    spec = ModelSpec.from_dict(VIT)
    m = models.create_model(spec, 7, 1, mean=MEAN, std=STD).eval()
    models.save_checkpoint(m, tmp_path / "vit", model_args=spec.model_args)
    loaded = models.load_checkpoint(tmp_path / "vit", expected_num_classes=7)
    x = _images(6)
    np.testing.assert_array_equal(compute_logits(m, x, mean=MEAN, std=STD),
                                  compute_logits(loaded, x, mean=MEAN, std=STD))
    assert models.model_data_config(loaded)["input_size"] == (1, S, S)


def test_checkpoint_spec_is_loaded_not_created(tmp_path):
    spec, m = _cnn()
    models.save_checkpoint(m, tmp_path / "ck", model_args=spec.model_args)
    ck = ModelSpec.from_dict({"name": "mine", "checkpoint": str(tmp_path / "ck")})
    with pytest.raises(ValueError, match="load_checkpoint"):
        models.create_model(ck, 5, 1)
    assert _sd_equal(models.load_checkpoint(ck.checkpoint, expected_num_classes=5), m)
    with pytest.raises(CheckpointError, match="5 classes.*9 classes"):
        models.load_checkpoint(ck.checkpoint, expected_num_classes=9)


@pytest.fixture()
def saved(tmp_path):
    spec, m = _cnn()
    folder = tmp_path / "ck"
    models.save_checkpoint(m, folder, model_args=spec.model_args)
    return folder


def test_load_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as e:
        models.load_checkpoint(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


def test_load_missing_config(saved):
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json") as e:
        models.load_checkpoint(saved)
    assert str(saved) in str(e.value)


def test_load_unparseable_config(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot parse") as e:
        models.load_checkpoint(saved)
    assert "config.json" in str(e.value)


def test_load_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors") as e:
        models.load_checkpoint(saved)
    assert str(saved) in str(e.value)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        models.weights_sha256(saved)


class _Boom:
    """A pickle that would leave a marker file if anything ever unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_only_checkpoint_is_never_unpickled(saved, tmp_path):
    (saved / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (saved / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        models.load_checkpoint(saved)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_load_corrupt_weights_names_file(saved, damage):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    with pytest.raises(CheckpointError) as e:
        models.load_checkpoint(saved)
    assert str(path) in str(e.value)


def test_load_class_count_mismatch_names_both(saved):
    with pytest.raises(CheckpointError) as e:
        models.load_checkpoint(saved, expected_num_classes=300)
    msg = str(e.value)
    assert str(saved) in msg and "5 classes" in msg and "300" in msg


def test_load_unknown_architecture(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["architecture"] = "xyz_not_a_model"
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown timm architecture 'xyz_not_a_model'") as e:
        models.load_checkpoint(saved)
    assert "config.json" in str(e.value)


def test_load_weights_that_do_not_fit(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["model_args"]["channels"] = [8, 8, 16, 32]
    cfg["num_features"] = 32
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit") as e:
        models.load_checkpoint(saved)
    assert "model.safetensors" in str(e.value)


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    spec, m = _cnn()
    folder = tmp_path / "ck"
    sha = models.save_checkpoint(m, folder, model_args=spec.model_args)
    import timm.models as tm

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tm, "save_for_hf", boom)
    with pytest.raises(OSError, match="disk full"):
        models.save_checkpoint(m, folder, model_args=spec.model_args)
    assert models.weights_sha256(folder) == sha
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


# --------------------------------------------------------------------------------------- training


def _toy_data(n_classes=4, per_class=24, seed=0):
    """Each class lights one quadrant: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    x = rng.integers(0, 60, size=(len(y), S, S)).astype(np.uint8)
    h = S // 2
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * h:(r + 1) * h, q * h:(q + 1) * h] += 150
    return x, y


def test_train_classifier_learns_and_is_deterministic():
    x, y = _toy_data()
    xv, yv = _toy_data(per_class=8, seed=1)
    kw = models.resolve_train_config({"epochs": 4, "lr": 1e-2, "batch_size": 16, "seed": 3,
                                      "warmup_epochs": 0.5})
    logs = []
    spec, m1 = _cnn(num_classes=4)
    r1 = training.train_classifier(m1, train_images=x, train_labels=y, val_images=xv, val_labels=yv,
                                   mean=MEAN, std=STD, log=logs.append, **kw)
    _, m2 = _cnn(num_classes=4)
    r2 = training.train_classifier(m2, train_images=x, train_labels=y, val_images=xv, val_labels=yv,
                                   mean=MEAN, std=STD, log=None, **kw)
    assert _sd_equal(m1, m2) and r1["val_acc"] == r2["val_acc"]
    assert len(r1["history"]) == 4 and len(logs) == 4
    assert "loss" in logs[0] and "val acc" in logs[0]
    assert r1["history"][-1]["loss"] < r1["history"][0]["loss"]
    assert r1["val_acc"] > 0.7  # chance is 0.25
    assert not m1.training


def _train_toy(threads=None, outer=1, n_classes=4):
    """The toy CNN trained for a few steps while this process runs ``outer`` torch threads; the
    weights' bytes (``threads`` None: the training's default) and the logits of the trained model."""
    x, y = _toy_data(n_classes=n_classes)
    kw = models.resolve_train_config({"epochs": 2, "lr": 1e-2, "batch_size": 32, "seed": 3})
    if threads is not None:
        kw["threads"] = threads
    before = torch.get_num_threads()
    torch.set_num_threads(outer)
    try:
        _, m = _cnn(num_classes=n_classes)
        r = training.train_classifier(m, train_images=x, train_labels=y, val_images=x, val_labels=y,
                                      mean=MEAN, std=STD, log=None, **kw)
        assert torch.get_num_threads() == outer  # restored after training
        weights = b"".join(t.numpy().tobytes() for t in m.state_dict().values())
        logits = compute_logits(m, x, mean=MEAN, std=STD, batch_size=32)
        assert torch.get_num_threads() == outer
    finally:
        torch.set_num_threads(before)
    return r, weights, logits


def test_training_bytes_do_not_depend_on_the_process_thread_count():
    """The same config, data and seed give the same weights and logits, bit for bit, in a one-thread
    and a two-thread process (a Dask worker and the CLI); the thread count training runs in does change
    the last bits (which is why it is fixed, and part of the config)."""
    r1, w1, lg1 = _train_toy(outer=1)
    r2, w2, lg2 = _train_toy(outer=2)
    assert r1["threads"] == r2["threads"] == models.TRAIN_DEFAULTS["threads"] == 1
    assert hashlib.sha256(w1).hexdigest() == hashlib.sha256(w2).hexdigest()
    assert lg1.tobytes() == lg2.tobytes()
    _, w3, _ = _train_toy(threads=2, outer=1)
    assert w3 != w1  # reductions split over two threads: other last bits
    np.testing.assert_allclose(np.frombuffer(w3, np.float32), np.frombuffer(w1, np.float32), rtol=1e-2, atol=1e-3)


def test_logits_do_not_depend_on_the_process_thread_count():
    _, m = _cnn(num_classes=5)
    x = _images(64)
    out = []
    before = torch.get_num_threads()
    try:
        for outer in (1, 2):
            torch.set_num_threads(outer)
            out.append(compute_logits(m, x, mean=MEAN, std=STD, batch_size=7))
        two = compute_logits(m, x, mean=MEAN, std=STD, batch_size=7, threads=2)  # odd batches: split otherwise
    finally:
        torch.set_num_threads(before)
    assert out[0].tobytes() == out[1].tobytes()
    assert two.tobytes() != out[0].tobytes()  # a forward pass in two threads: other last bits
    np.testing.assert_allclose(two, out[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_train_threads_must_be_a_positive_integer(threads):
    with pytest.raises(ValueError, match="threads"):
        models.resolve_train_config({"threads": threads})
    with pytest.raises(ValueError, match="threads"):
        _train_toy(threads=threads)


def test_train_classifier_with_sampler_and_shift():
    x, y = _toy_data()
    calls = []

    def sampler(labels, generator):
        calls.append(len(labels))
        idx = torch.as_tensor([int(np.flatnonzero(y == int(c))[0]) for c in labels])
        noise = torch.rand(len(labels), 1, S, S, generator=generator) * 0.1
        return (torch.from_numpy(x[idx.numpy()]).float()[:, None] / 255 + noise).clamp(0, 1)

    _, m = _cnn(num_classes=4)
    r = training.train_classifier(m, train_images=None, train_labels=y, val_images=x, val_labels=y,
                                  sampler=sampler, epochs=2, lr=3e-3, batch_size=32, weight_decay=0.0,
                                  seed=0, mean=MEAN, std=STD, log=None, augment="shift")
    assert sum(calls) == 2 * len(y)
    assert np.isfinite(r["history"][-1]["loss"])
    with pytest.raises(ValueError, match="train_images"):
        training.train_classifier(m, train_images=None, train_labels=y, val_images=x, val_labels=y,
                                  epochs=1, lr=1e-3, batch_size=8, weight_decay=0.0, seed=0,
                                  mean=MEAN, std=STD, log=None)


def test_shift_keeps_shape_and_moves_pixels():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 4, 4] = 1
    out = training._shift(x)
    assert out.shape == x.shape
    assert torch.all(out.sum(dim=(1, 2, 3)) == 1)
    assert (out[:, 0, 4, 4] == 0).any()


def test_resolve_train_config_defaults():
    kw = models.resolve_train_config({"epochs": 2})
    assert kw["epochs"] == 2 and kw["lr"] == models.TRAIN_DEFAULTS["lr"]
    with pytest.raises(ValueError, match="momentum"):
        models.resolve_train_config({"momentum": 0.9})


@pytest.mark.skipif(os.environ.get("NEUDEP_SLOW") != "1", reason="set NEUDEP_SLOW=1")
def test_glyph_smoke(tmp_path):  # pragma: no cover - dev check
    from neudep_assets.lib import data as glyphs

    cfg = glyphs.GlyphConfig(n_classes=10, n_ood_classes=2, train_per_class=10, val_per_class=4)
    paths = glyphs.build_splits(cfg, tmp_path)
    x, y = glyphs.load_split(paths["train"])
    r = glyphs.GlyphRenderer.for_classes(glyphs.glyph_classes(cfg), cfg.image_size)
    _, m = _cnn(num_classes=10)
    training.train_classifier(m, train_images=x, train_labels=y, val_images=x, val_labels=y,
                              sampler=r.render, epochs=1, lr=1e-3, batch_size=16, weight_decay=0.0,
                              seed=0, mean=MEAN, std=STD, log=None)
