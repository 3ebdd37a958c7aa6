"""Launchpad overrides are Optional fields: unset keeps the project value, set replaces it, and a bad
value is refused naming the key (no sentinel like [] / "" / 0.0 standing for 'keep')."""

import pytest

from neudep_assets.defs.dependency_assets import DependenciesConfig, _effective
from neudep_assets.lib.config import ConfigError, DependencyConfig


def test_unset_keeps_the_project_value_and_set_replaces_it():
    project = DependencyConfig(lambdas=(0.5, 0.1), tol=1e-9)
    for name in ("lambdas", "lambda_mode", "tol"):
        field = DependenciesConfig.model_fields[name]
        assert field.default is None and not field.is_required(), name  # Optional, no sentinel
    assert _effective(project, DependenciesConfig()) == project
    eff = _effective(project, DependenciesConfig(lambdas=[0.3], lambda_mode="absolute", tol=1e-10))
    assert (eff.lambdas, eff.lambda_mode, eff.tol) == ((0.3,), "absolute", 1e-10)


@pytest.mark.parametrize("override, key", [({"lambdas": []}, "lambdas"), ({"tol": 0.0}, "tol"),
                                           ({"lambda_mode": ""}, "lambda_mode")])
def test_an_explicit_empty_value_is_refused_not_taken_as_keep(override, key):
    with pytest.raises(ConfigError, match=key):
        _effective(DependencyConfig(), DependenciesConfig(**override))
