"""The model registry sensor: config models and watched checkpoint folders become partitions; new or
changed weights launch a run whose key holds their sha256; bad folders are refused and logged."""

import os
import pickle
import shutil
from pathlib import Path

import dagster as dg
import pytest
import torch

from neudep_assets.defs.resources import Neudep
from neudep_assets.defs.sensors import model_registry
from neudep_assets.lib.models import ModelSpec, create_model, save_checkpoint
from neudep_assets.lib.models.watch import Watched, scan_watch

SPEC = ModelSpec.from_dict({"name": "m", "arch": "resnet10t", "model_args": {"channels": [8, 8, 8, 8]}})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("src") / "ckpt"
    save_checkpoint(create_model(SPEC, num_classes=3, in_chans=1), folder, model_args=SPEC.model_args)
    return folder


class _RunsCode:
    """A pickle that would run code when unpickled (it must never be)."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def _tick(instance, resource, cursor=None):
    result = model_registry(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"neudep": resource}))
    for r in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
    return result


def test_scan_refuses_bad_names_symlinks_out_and_skips_temporary_folders(ckpt, tmp_path):
    watch = tmp_path / "incoming"
    shutil.copytree(ckpt, watch / "good")
    shutil.copytree(ckpt, watch / "bad name")
    shutil.copytree(ckpt, watch / ".good.tmp-1234")  # an atomic write in progress
    (watch / "escape").mkdir()
    shutil.copy(ckpt / "config.json", watch / "escape" / "config.json")
    (watch / "escape" / "model.safetensors").symlink_to(ckpt / "model.safetensors")  # out of the tree
    (watch / "inside").mkdir()
    shutil.copy(ckpt / "config.json", watch / "inside" / "config.json")
    (watch / "inside" / "model.safetensors").symlink_to(watch / "good" / "model.safetensors")  # stays inside
    (watch / "noconfig").mkdir()
    found, refused = scan_watch([watch])
    assert sorted(w.name for w in found) == ["good", "inside"]
    assert found[0].arch == "resnet10t"
    reasons = {folder.name: reason for folder, reason in refused}
    assert set(reasons) == {"bad name", "escape", "noconfig"}
    assert "not a valid model name" in reasons["bad name"]
    assert "symlink out of the watched directory" in reasons["escape"] and str(ckpt) in reasons["escape"]
    assert "config.json" in reasons["noconfig"]


def test_sensor_registers_launches_once_per_sha_and_hashes_only_moved_files(ckpt, tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: cnn, arch: resnet10t}]\n")
    data = tmp_path / "data"
    incoming = data / "checkpoints" / "incoming"  # the default watched folder
    shutil.copytree(ckpt, incoming / "v1")
    resource = Neudep(config_path=str(cfg), data_root=str(data))
    hashed = []
    real = Watched.sha256
    monkeypatch.setattr(Watched, "sha256", lambda self: hashed.append(self.name) or real(self))
    with dg.instance_for_test() as instance:
        waiting = _tick(instance, resource)  # no dataset yet: partitions only, no run
        assert not waiting.run_requests and waiting.cursor is None
        instance.report_runless_asset_event(dg.AssetMaterialization("dataset"))
        first = _tick(instance, resource)
        added = {r.partitions_def_name: set(r.partition_keys) for r in waiting.dynamic_partitions_requests}
        assert added == {"models": {"cnn", "v1"}, "model_targets": {"cnn", "v1"}}
        keys = {r.partition_key: r.run_key for r in first.run_requests}
        assert set(keys) == {"cnn", "v1"} and keys["cnn"] == "cnn@new"
        sha = real(Watched("v1", incoming / "v1", "resnet10t", incoming / "v1" / "model.safetensors"))
        assert keys["v1"] == f"v1@{sha}"  # the hash is in the run key
        assert hashed == ["v1"] * 2  # the waiting tick kept no cursor
        instance.report_runless_asset_event(dg.AssetMaterialization("checkpoint", partition="cnn"))  # cnn ran

        again = _tick(instance, resource, first.cursor)
        assert not again.run_requests and not again.dynamic_partitions_requests
        assert hashed == ["v1"] * 2  # size and mtime did not move: no hashing

        weights = incoming / "v1" / "model.safetensors"
        st = weights.stat()
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
        touched = _tick(instance, resource, again.cursor)
        assert hashed == ["v1"] * 3 and not touched.run_requests  # same sha: nothing launched

        model = create_model(SPEC, num_classes=3, in_chans=1)
        torch.nn.init.constant_(next(model.parameters()), 0.5)
        save_checkpoint(model, incoming / "v1", model_args=SPEC.model_args)  # new weights land
        changed = _tick(instance, resource, touched.cursor)
        assert [r.partition_key for r in changed.run_requests] == ["v1"]
        assert changed.run_requests[0].run_key != keys["v1"]

        shutil.rmtree(incoming / "v1")
        gone = _tick(instance, resource, changed.cursor)
        assert not gone.run_requests
        assert "v1" in instance.get_dynamic_partitions("models")  # its results stay queryable


def test_each_use_gets_the_models_its_config_lists_as_partitions(tmp_path):
    """incremental_models / regularization_models hold what incremental.models / regularization.models
    list (a use's partitions; a regularization child is none of them), a later config's additions too."""
    cfg, data = tmp_path / "c.yaml", tmp_path / "data"
    models = "models: [{name: cnn, arch: resnet10t}, {name: vit, arch: resnet10t}]\n"
    cfg.write_text(models + "incremental: {models: [cnn]}\nregularization: {models: [vit]}\n")
    resource = Neudep(config_path=str(cfg), data_root=str(data))

    def added(instance) -> dict:
        requests = _tick(instance, resource).dynamic_partitions_requests
        return {r.partitions_def_name: set(r.partition_keys) for r in requests}

    with dg.instance_for_test() as instance:
        assert added(instance) == {"models": {"cnn", "vit"}, "model_targets": {"cnn", "vit"},
                                   "incremental_models": {"cnn"}, "regularization_models": {"vit"}}
        cfg.write_text(models + "incremental: {models: [cnn, vit]}\nregularization: {models: [vit]}\n")
        assert added(instance) == {"incremental_models": {"vit"}}


def test_pickle_checkpoints_only_with_weights_only(ckpt, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: cnn, arch: resnet10t}]\nwatch: [in]\n")
    data = tmp_path / "data"
    model = create_model(SPEC, num_classes=3, in_chans=1)
    (tmp_path / "in" / "tensors").mkdir(parents=True)
    shutil.copy(ckpt / "config.json", tmp_path / "in" / "tensors" / "config.json")
    torch.save(model.state_dict(), tmp_path / "in" / "tensors" / "pytorch_model.bin")
    (tmp_path / "in" / "evil").mkdir()
    shutil.copy(ckpt / "config.json", tmp_path / "in" / "evil" / "config.json")
    sentinel = tmp_path / "code_ran"
    (tmp_path / "in" / "evil" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _RunsCode(sentinel)}))
    resource = Neudep(config_path=str(cfg), data_root=str(data))
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("dataset"))
        result = _tick(instance, resource)
        assert sorted(instance.get_dynamic_partitions("models")) == ["cnn", "tensors"]  # evil: refused
    assert not sentinel.exists()  # the malicious pickle was never unpickled
    assert sorted(r.partition_key for r in result.run_requests) == ["cnn", "tensors"]
    converted = resource.spec("tensors").checkpoint
    assert (Path(converted) / "model.safetensors").is_file() and str(data) in converted
    from neudep_assets.lib.models import load_checkpoint

    loaded = load_checkpoint(Path(converted))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
