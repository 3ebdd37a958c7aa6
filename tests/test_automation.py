"""Automation: what reads a model follows it by Dagster's automation conditions, a pair reads its two
models only, and sensor, automation and schedule are on when `make ui` starts."""

import dagster as dg

from neudep_assets.defs.partitions import pair_key, register
from neudep_assets.definitions import build_defs

AK = dg.AssetKey


def _materialize(instance, key: str, partition=None):
    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))


KEYS = ("dataset", "checkpoint", "logits", "moments", "dependencies", "target_logits", "between_dependencies",
        "comparisons")


def _requested(result) -> set[tuple[str, str | None]]:
    return {(k, str(p) if p is not None else None) for k in KEYS for p in result.get_requested_partitions(AK(k))}


def test_downstream_follows_a_changed_checkpoint_and_pairs_read_only_their_two_models(tmp_path):
    defs = build_defs(data_root=str(tmp_path))
    models = ["a", "b", "c"]
    with dg.instance_for_test() as instance:
        register(models, instance)
        _materialize(instance, "dataset")
        for m in models:
            for key in ("checkpoint", "logits", "moments", "dependencies", "target_logits"):
                _materialize(instance, key, m)
        for s in models:
            for t in models:
                _materialize(instance, "between_dependencies", pair_key(s, t))
        _materialize(instance, "comparisons")
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert _requested(first) == set()  # everything up to date: nothing

        _materialize(instance, "checkpoint", "a")  # new weights of model a
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert _requested(tick) == {("logits", "a"), ("moments", "a"), ("dependencies", "a")}

        for key in ("logits", "moments", "dependencies"):
            _materialize(instance, key, "a")
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert _requested(tick) == {("target_logits", "a"), ("comparisons", None),
                                    ("between_dependencies", "a|b"), ("between_dependencies", "a|c"),
                                    ("between_dependencies", "a|a")}  # a as source (its moments)
        _materialize(instance, "target_logits", "a")
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        # a as target; b|c, c|b never: they do not read model a
        pairs = {p for k, p in _requested(tick) if k == "between_dependencies"}
        assert {"b|a", "c|a"} <= pairs <= {"a|a", "b|a", "c|a"}


def test_pair_upstream_is_its_two_models_only(tmp_path):
    defs = build_defs(data_root=str(tmp_path))
    graph = defs.resolve_asset_graph()
    with dg.instance_for_test() as instance:
        register(["a", "b", "c"], instance)
        with dg._core.definitions.partitions.context.partition_loading_context(dynamic_partitions_store=instance):
            parents = graph.get_parents_partitions(AK("between_dependencies"), pair_key("a", "b")).parent_partitions
        assert {(p.asset_key.to_user_string(), p.partition_key) for p in parents} == {
            ("dataset", None), ("moments", "a"), ("target_logits", "b")}


def test_sensor_automation_and_schedule_are_on_by_default():
    defs = build_defs()
    sensors = {s.name: s for s in defs.sensors}
    assert sensors["model_registry"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["store_watch"].default_status == dg.DefaultSensorStatus.RUNNING  # the store decides what is missing
    assert isinstance(sensors["neudep_automation"], dg.AutomationConditionSensorDefinition)
    assert sensors["neudep_automation"].default_status == dg.DefaultSensorStatus.RUNNING
    assert len(defs.schedules) == 5  # one per job: dataset, model, target, pair, comparisons
    for schedule in defs.schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.cron_schedule == "0 4 * * 1"
    graph = defs.resolve_asset_graph()
    for key in ("logits", "moments", "dependencies", "between_dependencies", "comparisons", "checkpoint"):
        assert graph.get(AK(key)).automation_condition is not None, key


def test_a_new_model_does_not_make_another_models_regularization_report_stale(tmp_path):
    """regularization_report[cnn] reads cnn's own children from the store, not every model partition:
    a new (watched) checkpoint elsewhere leaves it as it was."""
    from neudep_assets.defs.jobs import _Staleness

    defs = build_defs(data_root=str(tmp_path))
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(AK("regularization_report")).parent_keys}
    assert parents == {"regularized_checkpoints"}
    with dg.instance_for_test() as instance:
        register(["cnn", "cnn.reg0"], instance, {"regularization_models": ["cnn"]})
        _materialize(instance, "dataset")
        for m in ("cnn", "cnn.reg0"):
            for key in ("checkpoint", "logits", "moments", "dependencies"):
                _materialize(instance, key, m)
        _materialize(instance, "regularized_checkpoints", "cnn")
        _materialize(instance, "regularization_report", "cnn")
        before = _Staleness(graph, instance).todo(["regularization_report"], "cnn")
        register(["other"], instance)  # a new checkpoint's partition, nothing of it materialized yet
        _materialize(instance, "checkpoint", "other")
        assert _Staleness(graph, instance).todo(["regularization_report"], "cnn") == before == []


def test_pairs_never_computed_are_recorded_with_a_note_not_left_missing(tmp_path):
    """a|a (the within analysis) and the pairs of a derived child are never computed: they get a
    materialization that says so (no run, nothing in the store), once; real pairs stay to be computed."""
    from neudep_assets.defs.jobs import _Staleness
    from neudep_assets.defs.partitions import record_uncomputed_pairs, uncomputed_note

    graph = build_defs(data_root=str(tmp_path)).resolve_asset_graph()
    with dg.instance_for_test() as instance:
        register(["a", "b"], instance)
        instance.add_dynamic_partitions("models", ["a.ctl0"])  # a regularization child: a models partition only
        recorded = record_uncomputed_pairs(instance, {"a.ctl0"})
        assert sorted(recorded) == ["a.ctl0|a", "a.ctl0|b", "a|a", "b|b"]
        assert record_uncomputed_pairs(instance, {"a.ctl0"}) == []  # once
        done = {str(k) for k in instance.get_materialized_partitions(AK("between_dependencies"))}
        assert done == set(recorded) and "a|b" not in done
        event = instance.get_latest_materialization_event(AK("between_dependencies"))
        assert event.asset_materialization.metadata["computed"].value is False
        from dagster._core.definitions.data_version import StaleStatus

        status = _Staleness(graph, instance)._resolver.get_status
        assert status(AK("between_dependencies"), pair_key("a", "a")) != StaleStatus.MISSING  # not grey in the UI
        assert status(AK("between_dependencies"), pair_key("a", "b")) == StaleStatus.MISSING
    assert "dependencies[a]" in uncomputed_note("a", "a", set()) and uncomputed_note("a", "b", set()) is None
    assert "derived" in uncomputed_note("a.ctl0", "b", {"a.ctl0"})


USES = ("incremental_heads", "regularized_checkpoints", "regularization_report")


def test_the_uses_are_partitions_of_the_models_they_apply_to_only(tmp_path):
    """A regularization child (cnn.reg0) is a model, not a partition of a use (it would stay missing in
    the UI forever); a use's partition reads its own model's partitions, by key."""
    from pathlib import Path

    from neudep_assets.defs.partitions import use_models
    from neudep_assets.lib.config import load_config

    config = Path(__file__).with_name("tiny_uses.yaml")
    graph = build_defs(str(config), str(tmp_path)).resolve_asset_graph()
    with dg.instance_for_test() as instance:
        register(["cnn", "cnn.ctl0", "cnn.reg0"], instance, use_models(load_config(config)))
        with dg._core.definitions.partitions.context.partition_loading_context(dynamic_partitions_store=instance):
            for key in USES:
                assert graph.get(AK(key)).partitions_def.get_partition_keys() == ["cnn"], key
            parents = {key: {(p.asset_key.to_user_string(), p.partition_key) for p in
                             graph.get_parents_partitions(AK(key), "cnn").parent_partitions} for key in USES}
            for child in ("cnn", "cnn.reg0"):  # a model's new weights reach the uses of that model only
                assert graph.get_child_partition_keys_of_parent(child, AK("checkpoint"), AK("incremental_heads")) == (
                    [child] if child == "cnn" else [])
    assert parents == {
        "incremental_heads": {("dataset", None), ("checkpoint", "cnn"), ("logits", "cnn")},
        "regularized_checkpoints": {("dataset", None), ("checkpoint", "cnn"), ("dependencies", "cnn")},
        "regularization_report": {("regularized_checkpoints", "cnn")}}
