"""The project config: the shipped neudep.yaml loads, and every malformation names file and key."""

from pathlib import Path

import pytest

from neudep_assets.lib.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_loads():
    cfg = load_config(ROOT / "neudep.yaml")
    assert cfg.dataset.kind == "glyphs" and len(cfg.models) >= 2
    assert 0.1 in cfg.dependencies.lambdas
    assert ("cnn", "vit") in cfg.model_pairs() and ("vit", "cnn") in cfg.model_pairs()


@pytest.mark.parametrize("text, culprit", [
    ("models: [", "not valid YAML"),
    ("datasett: {}\nmodels: [{name: a, arch: resnet18}]", "datasett"),
    ("models: []", "models: a non-empty list"),
    ("models: [{name: a, arch: resnet18, colour: red}]", "models\\[0\\]"),
    ("models: [{name: a, arch: resnet18}, {name: a, arch: resnet18}]", "unique"),
    ("models: [{name: a, arch: resnet18}]\ndependencies: {lambdas: [0.1, -1]}", "dependencies.lambdas"),
    ("models: [{name: a, arch: resnet18}]\ndependencies: {lambda_mode: odd}", "lambda_mode"),
    ("models: [{name: a, arch: resnet18}]\ndataset: {kind: zip}", "dataset.kind"),
    ("models: [{name: a, arch: resnet18}]\ndataset: {glyphs: {n_clases: 3}}", "n_clases"),
    ("models: [{name: 'a b', arch: resnet18}]", r"models\[0\]\.name: must be a single folder name"),
])
def test_malformed_config_names_file_and_key(tmp_path, text, culprit):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=culprit) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
