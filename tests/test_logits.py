"""Batched logits on arrays and on an ImageFolder, with the model's own preprocessing."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective only if torch is not imported yet

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from neudep_assets.lib import models
from neudep_assets.lib.models import logits  # noqa: E402
from neudep_assets.lib.models import ModelSpec  # noqa: E402

MEAN, STD = (0.2,), (0.25,)
S = 16


def _model(num_classes=5, in_chans=1, seed=0):
    spec = ModelSpec.from_dict({"name": "cnn", "arch": "resnet10t",
                                "model_args": {"channels": [8, 8, 16, 16], "stem_width": 8},
                                "train": {"seed": seed}})
    m = models.create_model(spec, num_classes, in_chans, mean=MEAN * in_chans, std=STD * in_chans, img_size=S)
    m.train()
    with torch.no_grad():  # non-trivial batch-norm running stats
        m(torch.randn(16, in_chans, S, S))
    return m.eval()


def _direct(m, x_uint8, mean, std):
    x = torch.from_numpy(x_uint8).float() / 255.0
    if x.ndim == 3:
        x = x[:, None]
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        return m(x).numpy()


def test_compute_logits_matches_direct_forward():
    m = _model()
    x = np.random.default_rng(0).integers(0, 256, size=(37, S, S), dtype=np.uint8)
    lines = []
    out = logits.compute_logits(m, x, mean=MEAN, std=STD, batch_size=8, log=lines.append)
    assert out.dtype == np.float32 and out.shape == (37, 5)
    np.testing.assert_allclose(out, _direct(m, x, MEAN, STD), rtol=1e-5, atol=1e-5)
    assert lines and "37/37" in lines[-1]
    # (N,1,S,S) input and a different batch size give the same numbers
    out2 = logits.compute_logits(m, x[:, None], mean=MEAN, std=STD, batch_size=512)
    np.testing.assert_allclose(out, out2, rtol=1e-5, atol=1e-5)


def test_compute_logits_grey_on_rgb_model_and_empty():
    m = _model(in_chans=3)
    x = np.random.default_rng(1).integers(0, 256, size=(4, S, S), dtype=np.uint8)
    out = logits.compute_logits(m, x, mean=MEAN * 3, std=STD * 3)
    np.testing.assert_allclose(out, _direct(m, np.repeat(x[:, None], 3, axis=1), MEAN * 3, STD * 3),
                               rtol=1e-5, atol=1e-5)
    empty = logits.compute_logits(m, x[:0], mean=MEAN * 3, std=STD * 3)
    assert empty.shape == (0, 5) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        logits.compute_logits(m, x[0], mean=MEAN, std=STD)


def test_pick_device():
    assert logits.pick_device("cpu") == "cpu"
    assert logits.pick_device() in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert logits.pick_device() in ("mps", "cpu")
        with pytest.raises(ValueError, match="CUDA"):
            logits.pick_device("cuda")
    with pytest.raises(ValueError, match="tpu"):
        logits.pick_device("tpu")


def _write_folder(root: Path, rng) -> dict[str, np.ndarray]:
    from PIL import Image

    arrays = {}
    for cls in ("beta", "alpha"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, size=(S, S), dtype=np.uint8)
            Image.fromarray(a, mode="L").save(root / cls / f"img{i}.png")
            arrays[f"{cls}/img{i}.png"] = a
    return arrays


def test_imagefolder_logits_matches_arrays(tmp_path):
    m = _model(num_classes=2)
    arrays = _write_folder(tmp_path / "val", np.random.default_rng(2))
    lines = []
    out, labels, ids, classes = logits.imagefolder_logits(m, tmp_path / "val", batch_size=4, log=lines.append)
    assert classes == ["alpha", "beta"]
    assert ids == sorted(arrays) and len(ids) == 6
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] and labels.dtype == np.int64
    assert out.shape == (6, 2) and out.dtype == np.float32
    x = np.stack([arrays[i] for i in ids])
    np.testing.assert_allclose(out, logits.compute_logits(m, x, mean=MEAN, std=STD), rtol=1e-4, atol=1e-4)
    assert lines


def test_imagefolder_logits_after_checkpoint_roundtrip(tmp_path):
    """The loaded checkpoint carries its normalization: same logits as the model in memory."""
    m = _model(num_classes=2)
    _write_folder(tmp_path / "val", np.random.default_rng(3))
    models.save_checkpoint(m, tmp_path / "ck", model_args={"channels": [8, 8, 16, 16], "stem_width": 8})
    loaded = models.load_checkpoint(tmp_path / "ck", expected_num_classes=2)
    a = logits.imagefolder_logits(m, tmp_path / "val")[0]
    b = logits.imagefolder_logits(loaded, tmp_path / "val")[0]
    np.testing.assert_array_equal(a, b)


def test_imagefolder_errors(tmp_path):
    m = _model()
    with pytest.raises(FileNotFoundError) as e:
        logits.imagefolder_logits(m, tmp_path / "missing")
    assert str(tmp_path / "missing") in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        logits.imagefolder_logits(m, tmp_path / "empty")
    assert "empty" in str(e.value)
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="noimg"):
        logits.imagefolder_logits(m, tmp_path / "noimg")
