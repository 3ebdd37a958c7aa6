"""A hub model (pretrained: true) keeps its own trained head: a dataset of another class count is refused
with both counts named, whatever way the model is named (plain timm name, with a pretrained tag,
`hf-hub:owner/repo`; `owner/repo` without the prefix is refused at config load) and wherever its weights
lie; a config.json whose class count disagrees with the weights is refused (timm would put an untrained
head on them). The "hub" is a Hugging Face cache made here, offline: a tiny resnet10t's 1000-class
weights saved as timm saves them, under the repo `timm/resnet10t.c3_in1k` that the registry names."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from neudep_assets.lib.config import ConfigError, load_config
from neudep_assets.lib.models import CheckpointError, create_model, obtain_checkpoint
from neudep_assets.lib.models.checkpoint_io import load_checkpoint
from neudep_assets.lib.specs import ModelSpec

ARGS = {"channels": [8, 8, 16, 16]}
REPO = "timm/resnet10t.c3_in1k"


def _put(cache: Path, repo: str, folder: Path) -> None:
    """The files of ``folder`` as the Hugging Face cache holds repo ``repo`` (refs/main -> a snapshot)."""
    base = cache / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        shutil.copy(f, snap / f.name)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text("0" * 40)


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding ``timm/resnet10t.c3_in1k`` (1000-class tiny weights) and, with
    ``lie(n)``, ``timm/liar`` whose config.json claims ``n`` classes over the same weights."""
    import huggingface_hub.constants as hf
    import timm

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # a test that tried the network would fail
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", **{k: tuple(v) for k, v in ARGS.items()})  # 1000 classes
    saved = tmp_path / "saved"
    timm.models.save_for_hf(model, saved, safe_serialization="both")
    _put(cache, REPO, saved)

    def lie(n: int, repo: str = "timm/liar") -> str:
        cfg = json.loads((saved / "config.json").read_text())
        cfg["num_classes"] = cfg["pretrained_cfg"]["num_classes"] = cfg["model_args"]["num_classes"] = n
        liar = tmp_path / "liar"
        shutil.copytree(saved, liar, dirs_exist_ok=True)
        (liar / "config.json").write_text(json.dumps(cfg))
        _put(cache, repo, liar)
        return "hf-hub:" + repo

    return SimpleNamespace(weights=model.state_dict(), saved=saved, lie=lie)


def _spec(arch="resnet10t", **args):
    return ModelSpec.from_dict({"name": "hubby", "arch": arch, "pretrained": True, "model_args": {**ARGS, **args}})


@pytest.mark.parametrize("arch", ["resnet10t", "resnet10t.c3_in1k", f"hf-hub:{REPO}"])
def test_hub_model_on_a_dataset_of_another_class_count_is_refused_naming_both(hub, arch):
    with pytest.raises(CheckpointError, match=r"has 1000 classes but the dataset has 12 classes"):
        create_model(_spec(arch), num_classes=12, in_chans=3)


@pytest.mark.parametrize("arch", ["resnet10t", "resnet10t.c3_in1k", f"hf-hub:{REPO}"])
def test_hub_model_keeps_its_own_trained_head(hub, arch):
    model = create_model(_spec(arch), num_classes=1000, in_chans=3)
    assert torch.equal(model.get_classifier().weight, hub.weights["fc.weight"])


def test_a_hub_config_that_lies_about_the_class_count_is_refused(hub):
    """The issue's case: config.json says 12 classes over 1000-class weights, on a 12-class dataset
    (timm would build 12 classes and load nothing into them)."""
    arch = hub.lie(12)
    with pytest.raises(CheckpointError, match=r"config says 12 classes but the weights' head .*model.safetensors.* "
                                              r"has 1000"):
        create_model(_spec(arch), num_classes=12, in_chans=3)
    with pytest.raises(CheckpointError, match="config says 12 classes"):
        create_model(_spec(arch), num_classes=1000, in_chans=3)


def test_a_repo_id_without_hf_hub_is_refused_at_config_load(tmp_path):
    path = tmp_path / "neudep.yaml"
    path.write_text("dataset: {kind: imagefolder, name: mine, splits: {train: t, val: v}}\n"
                    f"models: [{{name: hubby, arch: '{REPO}', pretrained: true}}]\n")
    with pytest.raises(ConfigError, match=rf"{path}: models\[0\]: .*write 'hf-hub:{REPO}'"):
        load_config(path)


def test_a_local_folder_whose_config_lies_is_refused(hub, tmp_path):
    """`checkpoint:` (timm's local-dir): the config's count is checked, and the weights must fit exactly."""
    folder = tmp_path / "local"
    shutil.copytree(hub.saved, folder)
    (folder / "pytorch_model.bin").unlink()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_classes"] = cfg["pretrained_cfg"]["num_classes"] = cfg["model_args"]["num_classes"] = 12
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"do not fit .*size mismatch for fc.weight"):
        load_checkpoint(folder, expected_num_classes=12)
    with pytest.raises(CheckpointError, match="has 12 classes but the dataset has 1000"):
        load_checkpoint(folder, expected_num_classes=1000)


def test_hub_checkpoint_folder_is_keyed_by_model_args(hub, tmp_path):
    ds = SimpleNamespace(n_classes=1000)
    a = obtain_checkpoint(_spec(), ds, tmp_path, log=lambda *_: None)
    b = obtain_checkpoint(_spec(drop_rate=0.5), ds, tmp_path, log=lambda *_: None)
    assert a.path != b.path and a.origin == b.origin == "hub"
    assert json.loads((Path(b.path) / "config.json").read_text())["model_args"]["drop_rate"] == 0.5
    with pytest.raises(CheckpointError, match="1000 classes.*12 classes"):
        obtain_checkpoint(_spec(drop_rate=0.25), SimpleNamespace(n_classes=12), tmp_path, log=lambda *_: None)


def test_weights_missing_from_an_offline_cache_say_how_to_get_them(hub):
    from neudep_assets.lib.models import PretrainedWeightsUnavailable

    with pytest.raises(PretrainedWeightsUnavailable, match="cannot be downloaded"):
        create_model(_spec("hf-hub:timm/not-in-the-cache"), num_classes=1000, in_chans=3)
