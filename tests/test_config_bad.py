"""Every bad value of neudep.yaml is refused at config load, before any work: the error names the file and
the key path, and nothing is written (the load runs with an empty data root, which stays empty)."""

import os
import re
import time
from pathlib import Path

import pytest

from neudep_assets.lib.config import ConfigError, load_config, store_location

ROOT = Path(__file__).resolve().parents[1]
TINY = (ROOT / "tests" / "tiny.yaml").read_text()
USES = (ROOT / "tests" / "tiny_uses.yaml").read_text()

BOMB = ("models:\n  - name: cnn\n    arch: resnet10t\n    model_args:\n"
        "      a: &a [x, x, x, x, x, x, x, x, x, x]\n" +
        "".join(f"      {c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, c in zip("abcdefgh", "bcdefghi")))


def tiny(old: str, new: str, text: str = TINY) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (config text, the key path the error must name); each of these was accepted, or refused only after
# training, without the key, or by another library's error, on main before this schema
BAD = [
    pytest.param(BOMB, "expands to more than", id="alias-bomb-in-model_args"),
    pytest.param(tiny("val_per_class: 4", "val_per_class: 0"), r"dataset\.glyphs\.val_per_class: must be ≥ 1 \(got 0\)",
                 id="val_per_class-0"),
    pytest.param(tiny("star_plots: 1", "star_plots: many"), r"dependencies\.star_plots: must be an integer", id="star_plots-many"),
    pytest.param(tiny("train_per_class: 6", "train_per_class: 0"), r"dataset\.glyphs\.train_per_class: must be ≥ 1",
                 id="train_per_class-0"),
    pytest.param(tiny("n_classes: 12", "n_classes: 1"), r"dataset\.glyphs\.n_classes: must be ≥ 2", id="n_classes-1"),
    pytest.param(tiny("  epochs: 5", "  epochs: 5\n  lr: .nan", USES), r"incremental\.lr: must be a finite number",
                 id="incremental.lr-nan"),
    pytest.param(tiny("star_plots: 1", "star_plots: 1\n  tol: 1.0e-300"), r"dependencies\.tol: must be ≥ 1e-15",
                 id="tol-1e-300"),
    pytest.param(tiny("  epochs: 5", "  epochs: 5\n  l1: .inf", USES), r"incremental\.l1: must be a finite number",
                 id="incremental.l1-inf"),
    pytest.param(tiny("alpha: 1.0", "alpha: .nan", USES), r"regularization\.alpha: must be a finite number",
                 id="regularization.alpha-nan"),
    pytest.param(TINY + "schedule: '0 25 * * *'\n", r"schedule: not a cron string \(hour", id="cron-hour-25"),
    pytest.param(TINY + "schedule: 'every monday'\n", r"schedule: not a cron string", id="cron-words"),
    pytest.param(TINY + "executor: {kind: dask, scheduler: 12345}\n", r"executor\.scheduler: must be a string",
                 id="scheduler-int"),
    pytest.param(TINY + "executor: {kind: dask, scheduler: 'localhost'}\n", r"executor\.scheduler: must be a dask "
                 "scheduler address host:port", id="scheduler-no-port"),
    pytest.param(tiny("kind: glyphs", "kind: imagefolder\n  name: ../../escape\n  splits: {train: t, val: v}"),
                 r"dataset\.name: must be a single folder name", id="dataset.name-escape"),
    pytest.param(tiny("dependencies:", "dependencies:\n  lamdbas: [0.1]"),
                 r"dependencies\.lamdbas: unknown key; did you mean 'lambdas'\?", id="unknown-key-suggestion"),
    pytest.param(TINY + "devcie: cpu\n", r"devcie: unknown key; did you mean 'device'\?", id="unknown-top-key"),
    pytest.param(tiny("train: {epochs: 2,", "train: {epochs: -1,"), r"models\[0\]\.train\.epochs: must be ≥ 1",
                 id="negative-epochs"),
    pytest.param(tiny("lambdas: [0.5, 0.1, 0.02]", "lambdas: []"), r"dependencies\.lambdas: must have at least 1",
                 id="lambdas-empty"),
    pytest.param(tiny("lambdas: [0.5, 0.1, 0.02]", "lambdas: [0.02, 0.1, 0.5]"), r"dependencies\.lambdas: must be "
                 "decreasing", id="lambdas-unsorted"),
    pytest.param(tiny("lambdas: [0.5, 0.1, 0.02]", "lambdas: [2.0, 0.1]"), r"dependencies\.lambdas: .*\(0, 1\]",
                 id="lambdas-above-1-relative"),
    pytest.param(tiny("lambdas: [0.5, 0.1, 0.02]", "lambdas: [0.5, .nan]"), r"dependencies\.lambdas\[1\]: must be a "
                 "finite", id="lambdas-nan"),
    pytest.param(tiny("star_plots: 1", "star_plots: 1\n  logit_gauge: centred"), r"dependencies\.logit_gauge: must be "
                 "one of raw, centered", id="unknown-gauge"),
    pytest.param(TINY + "device: gpu\n", r"device: must be one of", id="unknown-device"),
    pytest.param(tiny("star_plots: 1", "star_plots: 1\n  tol: 1e-9"), r"dependencies\.tol: must be a number \(YAML reads "
                 "1e-9 as text", id="tol-as-text"),
    pytest.param(tiny("star_plots: 1", "star_plots: -1"), r"dependencies\.star_plots: must be ≥ 0", id="star_plots-neg"),
    pytest.param(tiny("star_plots: 1", "star_plots: true"), r"dependencies\.star_plots: must be an integer",
                 id="star_plots-bool"),
    pytest.param(tiny("image_size: 32", "image_size: 4"), r"dataset\.glyphs\.image_size: must be ≥ 8", id="image_size"),
    pytest.param(tiny("lr: 0.003, batch_size: 32, label", "lr: .inf, batch_size: 32, label"),
                 r"models\[0\]\.train\.lr: must be a finite number", id="train.lr-inf"),
    pytest.param(tiny("logits_batch_size: 7", "logits_batch_size: 0"), r"models\[0\]\.logits_batch_size: must be ≥ 1",
                 id="logits_batch_size-0"),
    pytest.param(tiny("name: vit", "name: cnn"), r"models: model names must be unique", id="duplicate-model"),
    pytest.param(tiny("arch: resnet10t", "arch: timm/resnet10t.c3_in1k"), r"models\[0\]: .*write 'hf-hub:timm/resnet10t",
                 id="repo-id-without-hf-hub"),
    pytest.param(tiny("models: [cnn]", "models: [cnm]", USES), r"incremental\.models: no model named 'cnm'",
                 id="incremental-unknown-model"),
    pytest.param(tiny("seeds: 2", "seeds: 0", USES), r"incremental\.seeds: must be ≥ 1", id="incremental.seeds-0"),
    pytest.param(tiny("splits: [\"90/10\", all_but_one]", "splits: [\"80/20\"]", USES), r"incremental\.splits\[0\]: "
                 "must be one of", id="incremental-split"),
    pytest.param(tiny("max_steps: 3", "max_steps: 3\n  pairs: [[a, a]]", USES), r"regularization\.pairs\[0\] names the "
                 "same class twice", id="pair-same-class"),
    pytest.param(tiny("lambda_rel: 0.02", "lambda_rel: 0.3", USES), r"regularization\.lambda_rel = 0\.3 is not on",
                 id="lambda_rel-off-grid"),
    pytest.param(TINY + "executor: {kind: multiprocess, n_workers: 0}\n", r"executor\.n_workers: must be ≥ 1",
                 id="n_workers-0"),
    pytest.param(TINY + "executor: {kind: in_process, scheduler: 'host:8786'}\n", r"executor\.scheduler: only used "
                 "with kind: dask", id="scheduler-without-dask"),
    pytest.param(tiny("dependencies:", "dependencies:\n  fit_split: test"), r"dependencies\.fit_split: must be one of",
                 id="fit_split"),
    pytest.param(tiny("dependencies:", "dependencies:\n  chunk_steps: 2.0"), r"dependencies\.chunk_steps: must be an "
                 "integer", id="chunk_steps-float"),
    pytest.param(TINY + "store: ''\n", r"store: must not be empty", id="store-empty"),
    pytest.param(tiny("star_plots: 1", "star_plots: 1\n  star_plots: 2"), r"key 'star_plots' given twice",
                 id="duplicate-key"),
    pytest.param(TINY + "watch: 3\n", r"watch: must be a string \(got 3\)\n.*watch: must be a list \(got 3\)",
                 id="watch-int"),
    pytest.param("a: &a [*a]\n", r"recursive alias|not valid YAML", id="recursive-alias"),
]


@pytest.mark.parametrize("text, culprit", BAD)
def test_bad_value_is_refused_naming_file_and_key_and_nothing_is_written(tmp_path, monkeypatch, text, culprit):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("NEUDEP_DATA", str(data))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "neudep.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=culprit) as err:
        load_config(path)
    assert time.perf_counter() - t0 < 2.0  # refused quickly (the alias bomb included)
    assert str(path) in str(err.value)
    assert os.listdir(data) == [] and sorted(os.listdir(tmp_path)) == ["data", "neudep.yaml"]


def test_the_table_holds_every_case_of_the_issue():
    assert len(BAD) >= 20


def test_every_error_line_names_the_file(tmp_path):
    path = tmp_path / "neudep.yaml"
    path.write_text(tiny("val_per_class: 4", "val_per_class: 0").replace("star_plots: 1", "star_plots: many"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: ") for line in lines)


def test_a_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "neudep.yaml"
    path.write_text(TINY + "#" * (2 << 20))
    with pytest.raises(ConfigError, match="bytes, more than a config file may have"):
        load_config(path)


def test_small_anchors_still_work(tmp_path):
    path = tmp_path / "neudep.yaml"
    path.write_text(tiny("train: {epochs: 2, lr: 0.003, batch_size: 32, label_smoothing: 0.0, seed: 0}",
                         "train: &recipe {epochs: 2, lr: 0.003, batch_size: 32, label_smoothing: 0.0, seed: 0}"
                         ).replace("train: {epochs: 2, lr: 0.003, batch_size: 32, label_smoothing: 0.0, seed: 0}",
                                   "train: *recipe"))
    cfg = load_config(path)
    assert cfg.models[0].train == cfg.models[1].train == load_config(ROOT / "tests" / "tiny.yaml").models[1].train


def test_store_location_reads_with_the_same_limits(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    path = tmp_path / "neudep.yaml"
    path.write_text(BOMB + "store: elsewhere\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        store_location(tmp_path, path)


CRONS = ["0 4 * * 1", "*/15 * * * *", "0 0 1 1 *", "5 4 * * sun", "0 22 * * 1-5", "0 0,12 1 */2 *", "@daily",
         "0 4 * * 7", "0 0 1-31/2 jan-jun mon-fri", "0 25 * * *", "60 * * * *", "* * * *", "* * * * * *", "every monday",
         "0 4 * * 8", "0 0 30 2 *", "0 0 0 * *", "0 0 * 13 *", "5-1 * * * *", "*/0 * * * *", "0 4 * * funday", ""]


@pytest.mark.parametrize("cron", CRONS)
def test_cron_check_agrees_with_dagster(cron):
    """lib may not import Dagster: its own cron check says yes exactly where Dagster's does."""
    from dagster._utils.schedules import is_valid_cron_string

    from neudep_assets.lib.cron import cron_problem

    assert (cron_problem(cron) is None) == is_valid_cron_string(cron), cron_problem(cron)


@pytest.mark.parametrize("override, culprit", [
    ({"tol": float("nan")}, r"run config: dependencies\.tol: must be a finite number"),
    ({"tol": 1e-300}, r"dependencies\.tol: must be ≥ 1e-15"),
    ({"lambdas": [0.1, 0.5]}, r"dependencies\.lambdas: must be decreasing"),
    ({"lambdas": [0.5, float("inf")]}, r"dependencies\.lambdas\[1\]: must be a finite number"),
    ({"target_chunk": 0}, r"dependencies\.target_chunk: must be ≥ 1"),
])
def test_launchpad_override_is_refused_by_the_same_schema(override, culprit):
    from neudep_assets.defs.dependency_assets import DependenciesConfig, _effective
    from neudep_assets.lib.config import DependencyConfig

    with pytest.raises(ConfigError, match=culprit):
        _effective(DependencyConfig(), DependenciesConfig(**override))


def test_launchpad_uses_overrides_go_through_the_schema():
    """What the incremental / regularization assets validate after applying their Launchpad overrides."""
    import dataclasses

    from neudep_assets.lib.config import IncrementalConfig, RegularizationConfig

    with pytest.raises(ConfigError, match=r"run config: incremental\.l1: must be a finite number"):
        dataclasses.replace(IncrementalConfig(), l1=float("nan")).validate("run config")
    with pytest.raises(ConfigError, match=r"run config: incremental\.seeds: must be ≥ 1"):
        dataclasses.replace(IncrementalConfig(), seeds=-2).validate("run config")
    with pytest.raises(ConfigError, match=r"run config: regularization\.alpha: must be a finite number"):
        dataclasses.replace(RegularizationConfig(), alpha=float("nan")).validate("run config")


def test_neudep_demo_refuses_a_bad_config_before_writing_anything(tmp_path, monkeypatch):
    from neudep_assets.cli import run_pipeline

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    data, path = tmp_path / "data", tmp_path / "neudep.yaml"
    data.mkdir()
    path.write_text(tiny("val_per_class: 4", "val_per_class: 0"))
    with pytest.raises(ConfigError, match=r"dataset\.glyphs\.val_per_class: must be ≥ 1 \(got 0\)"):
        run_pipeline(path, data, log=lambda *_: None)
    assert os.listdir(data) == [] and sorted(os.listdir(tmp_path)) == ["data", "neudep.yaml"]


def test_the_code_location_loads_and_a_run_stops_at_the_config_naming_the_key(tmp_path):
    """The Dagster definitions still load (the UI shows the error), and a run refuses before any work."""
    import dagster as dg

    from neudep_assets.definitions import build_defs
    from neudep_assets.defs.dataset_assets import dataset
    from neudep_assets.defs.resources import Neudep

    data, path = tmp_path / "data", tmp_path / "neudep.yaml"
    data.mkdir()
    path.write_text(tiny("kind: glyphs", "kind: imagefolder\n  name: ../../escape\n  splits: {train: t, val: v}"))
    assert build_defs(str(path), str(data)) is not None
    res = dg.materialize([dataset], resources={"neudep": Neudep(config_path=str(path), data_root=str(data))},
                         raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure).step_failure_data.error.cause
    assert failure.cls_name == "ConfigError"
    assert "dataset.name: must be a single folder name" in failure.message and str(path) in failure.message
    assert os.listdir(data) == []


@pytest.mark.parametrize("key", ["int", "str", "none", "list[str]"])
def test_an_unknown_key_named_like_a_type_is_still_named(tmp_path, key):
    path = tmp_path / "neudep.yaml"
    path.write_text(TINY + f"'{key}': 1\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: {re.escape(key)}: unknown key"):
        load_config(path)
