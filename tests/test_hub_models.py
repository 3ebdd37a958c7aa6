"""A hub model (pretrained: true) keeps its own head: a dataset of another class count is refused with
both counts named, and the cached folder is keyed by the model's arguments. The "hub" is a model made
offline here: timm's pretrained loading is replaced by one that loads its weights (and, as timm does,
drops the classifier when asked for another class count)."""

from types import SimpleNamespace

import pytest
import torch

from neudep_assets.lib.models import CheckpointError, create_model, obtain_checkpoint
from neudep_assets.lib.specs import ModelSpec

ARGS = {"channels": [8, 8, 16, 16]}


@pytest.fixture()
def hub(monkeypatch):
    import timm
    import timm.models._builder as builder

    torch.manual_seed(0)
    weights = timm.create_model("resnet10t", **{k: tuple(v) for k, v in ARGS.items()}).state_dict()  # 1000 classes

    def load_pretrained(model, pretrained_cfg=None, num_classes=1000, in_chans=3, filter_fn=None, strict=True,
                        cache_dir=None):
        sd = {k: v.clone() for k, v in weights.items()}
        if num_classes != 1000:  # what timm does: a fresh, untrained head
            sd.pop("fc.weight"), sd.pop("fc.bias")
        model.load_state_dict(sd, strict=num_classes == 1000)

    monkeypatch.setattr(builder, "load_pretrained", load_pretrained)
    return weights


def _spec(**args):
    return ModelSpec.from_dict({"name": "hubby", "arch": "resnet10t", "pretrained": True,
                                "model_args": {**ARGS, **args}})


def test_hub_model_on_a_dataset_of_another_class_count_is_refused_naming_both(hub):
    with pytest.raises(CheckpointError, match=r"has 1000 classes but the dataset has 12 classes"):
        create_model(_spec(), num_classes=12, in_chans=3)


def test_hub_model_keeps_its_own_trained_head(hub):
    model = create_model(_spec(), num_classes=1000, in_chans=3)
    assert torch.equal(model.get_classifier().weight, hub["fc.weight"])


def test_hub_checkpoint_folder_is_keyed_by_model_args(hub, tmp_path):
    ds = SimpleNamespace(n_classes=1000)
    a = obtain_checkpoint(_spec(), ds, tmp_path, log=lambda *_: None)
    b = obtain_checkpoint(_spec(drop_rate=0.5), ds, tmp_path, log=lambda *_: None)
    assert a.path != b.path and a.origin == b.origin == "hub"
    import json
    from pathlib import Path

    assert json.loads((Path(b.path) / "config.json").read_text())["model_args"]["drop_rate"] == 0.5
    with pytest.raises(CheckpointError, match="1000 classes.*12 classes"):
        obtain_checkpoint(_spec(drop_rate=0.25), SimpleNamespace(n_classes=12), tmp_path, log=lambda *_: None)
