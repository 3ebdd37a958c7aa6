"""Launchpad overrides are Optional fields: unset keeps the project value, set replaces it, and a bad
value is refused naming the key (no sentinel like [] / "" / 0.0 standing for 'keep')."""

import pytest

from neudep_assets.defs.dependency_assets import DependenciesConfig, _effective
from neudep_assets.lib.config import ConfigError, DependencyConfig


def test_unset_keeps_the_project_value_and_set_replaces_it():
    project = DependencyConfig(lambdas=(0.5, 0.1), tol=1e-9)
    for name in ("lambdas", "lambda_mode", "tol", "target_chunk", "logit_gauge", "store_path"):
        field = DependenciesConfig.model_fields[name]
        assert field.default is None and not field.is_required(), name  # Optional, no sentinel
    assert _effective(project, DependenciesConfig()) == project
    assert set(DependenciesConfig.model_fields) == {"lambdas", "lambda_mode", "tol", "target_chunk", "logit_gauge",
                                                    "store_path"}
    eff = _effective(project, DependenciesConfig(lambdas=[0.3], lambda_mode="absolute", tol=1e-10, target_chunk=7,
                                                 logit_gauge="centered", store_path=True))
    assert (eff.lambdas, eff.lambda_mode, eff.tol, eff.target_chunk, eff.logit_gauge, eff.store_path) == (
        (0.3,), "absolute", 1e-10, 7, "centered", True)


def test_logits_batch_size_is_optional():
    from neudep_assets.defs.model_assets import LogitsConfig

    field = LogitsConfig.model_fields["batch_size"]
    assert field.default is None and not field.is_required()


@pytest.mark.parametrize("override, key", [({"lambdas": []}, "lambdas"), ({"tol": 0.0}, "tol"),
                                           ({"lambda_mode": ""}, "lambda_mode"), ({"target_chunk": 0}, "target_chunk"),
                                           ({"logit_gauge": ""}, "logit_gauge")])
def test_an_explicit_empty_value_is_refused_not_taken_as_keep(override, key):
    with pytest.raises(ConfigError, match=key):
        _effective(DependencyConfig(), DependenciesConfig(**override))


def _mapping(project):
    from neudep_assets.defs.dependency_assets import dependency_assets

    within, between = dependency_assets(1, project)
    return within.node_def.config_mapping, between.node_def.config_mapping


def test_the_launchpad_scaffolds_the_project_values_and_maps_them_to_unset():
    """'Scaffold missing config' writes out the fields with neudep.yaml's values (not `ops: {}`); a field
    left at that value keeps the project's value at run time, an edited one overrides it."""
    from dagster._config import post_process_config

    project = DependencyConfig(lambdas=(0.5, 0.1), tol=1e-8, target_chunk=16, logit_gauge="centered")
    for mapping, op in zip(_mapping(project), ("dependencies_plan", "between_dependencies_plan")):
        fields = mapping.config_schema.config_type.fields
        assert set(fields) == set(DependenciesConfig.model_fields)
        assert all(f.default_provided and not f.is_required and f.description for f in fields.values())
        scaffold = post_process_config(mapping.config_schema.config_type, {}).value  # the Launchpad's defaults
        assert scaffold == {"lambdas": [0.5, 0.1], "lambda_mode": "relative", "tol": 1e-8, "target_chunk": 16,
                            "logit_gauge": "centered", "store_path": False}
        assert mapping.config_fn(scaffold) == {op: {"config": DependenciesConfig().model_dump()}}  # all unset
        edited = mapping.config_fn({**scaffold, "lambdas": [0.3]})[op]["config"]
        assert _effective(project, DependenciesConfig(**edited)).lambdas == (0.3,)
        assert _effective(project, DependenciesConfig(**edited)).tol == 1e-8
