"""The model registry sensor: config models become partitions; a changed checkpoint file reruns."""

import os
from pathlib import Path

import dagster as dg

from neudep_assets.defs.resources import Neudep
from neudep_assets.defs.sensors import model_registry
from neudep_assets.lib.models import ModelSpec, create_model, save_checkpoint


def test_registers_partitions_and_reacts_to_checkpoint_changes(tmp_path):
    spec = ModelSpec.from_dict({"name": "m", "arch": "resnet10t", "model_args": {"channels": [8, 8, 8, 8]}})
    save_checkpoint(create_model(spec, num_classes=3, in_chans=1), tmp_path / "ckpt", model_args=spec.model_args)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [{name: mine, checkpoint: ckpt}, {name: cnn, arch: resnet10t}]\n")
    resource = Neudep(config_path=str(cfg), data_root=str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        result = model_registry(dg.build_sensor_context(instance=instance, resources={"neudep": resource}))
        added = {r.partitions_def_name: set(r.partition_keys) for r in result.dynamic_partitions_requests}
        assert added == {"models": {"mine", "cnn"}, "model_pairs": {"mine->cnn", "cnn->mine"}}
        assert [r.partition_key for r in result.run_requests] == ["mine"]  # the local checkpoint appeared

        for r in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
        again = model_registry(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                                       resources={"neudep": resource}))
        assert not again.run_requests and not again.dynamic_partitions_requests

        weights = Path(tmp_path / "ckpt" / "model.safetensors")
        st = weights.stat()
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new checkpoint file lands
        changed = model_registry(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                                         resources={"neudep": resource}))
        assert [r.partition_key for r in changed.run_requests] == ["mine"]
