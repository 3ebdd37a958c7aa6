"""§3.2 and §3.3 end to end on tiny data: incremental heads, regularized children flowing through the
graph as models of their own, Table 2/4 and Table 3 from the store; reruns; bad input refused."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml

from neudep_assets.cli import LINEAGE_SQL, PipelineError, run_pipeline
from neudep_assets.lib.config import ConfigError, load_config
from neudep_assets.lib.store import ResultStore
from tests.test_pipeline import pipeline_fixture
from tests.test_pipeline_imagefolder import CLASSES, _image_folder

TINY = Path(__file__).with_name("tiny_uses.yaml")
QUERIES = Path(__file__).resolve().parents[1] / "sql" / "queries"


def _files(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for d in ("store", "checkpoints", "artifacts") for p in (root / d).rglob("*")
            if p.is_file()}


def _variant(tmp_path: Path, name: str, **changes) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    for dotted, value in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for key in path:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return out


tiny = pipeline_fixture(TINY, "tiny")


def test_incremental_heads_table_and_theta_graph(tiny):
    root, _ = tiny
    store = ResultStore(root)
    res = store.query("SELECT * FROM incremental_results")
    assert set(res["method"]) == {"theta_head", "linear_head", "all_classes"}
    assert set(res["setting"]) == {"90/10", "all_but_one"} and set(res["seed"]) == {0, 1}
    assert ((res["n_base"] == 11) & (res["n_new"] == 1)).all()
    heads = res[res["method"] != "all_classes"]
    assert heads[READ].notna().all().all()
    # the demo's profile rests on the trained model: the base is the CNN with the new classes' head rows
    # removed (labelled), the all-class baseline is the CNN's own checkpoint, with its own val accuracy
    model = store.query("SELECT * FROM checkpoints WHERE model = 'cnn'")
    assert (res["base_origin"] == "base-truncated").all()
    assert (res["baseline_checkpoint_sha256"] == model["checkpoint_sha256"][0]).all()
    own_acc = store.query("SELECT accuracy FROM logit_sets WHERE checkpoint_sha256 = $s AND split = 'val'",
                          {"s": model["checkpoint_sha256"][0]})["accuracy"][0]
    assert np.allclose(res.loc[res["method"] == "all_classes", "overall_acc"], own_acc)
    # a truncated base keeps the model's base logits: every head reads the base group as the model does
    for setting, grp in res.groupby("setting"):
        assert np.allclose(grp["base_acc"], grp.loc[grp["method"] == "all_classes", "base_acc"].iloc[0])
    base = store.query("SELECT c.*, p.model AS parent FROM checkpoints c JOIN checkpoints p "
                       "ON c.parent_sha256 = p.checkpoint_sha256 WHERE c.origin = 'base-truncated'")
    assert set(base["checkpoint_sha256"]) == set(res["base_checkpoint_sha256"])  # one per split (or shared)
    assert (base["num_classes"] == 11).all() and (base["parent"] == "cnn").all()
    _check_times(res)
    # Θ is a dependency graph: new class ← base classes, names on both ends, exportable by run id
    runs = res.loc[res["method"] == "theta_head", "dependency_run_id"].unique()
    # committed like any analysis (one folder), through the certificate gate: Θ has no KKT, kkt = 0 by convention
    assert len(runs) == 4 and all(store.has_analysis(r) for r in runs)
    kkt = store.query("SELECT kkt FROM dependency_metrics WHERE dependency_run_id IN (SELECT dependency_run_id FROM "
                      "dependency_runs WHERE kind = 'theta_head')")["kkt"]
    assert len(kkt) and (kkt == 0).all()
    lineage = store.query(LINEAGE_SQL, {"model": "", "source": "", "lam": 0.0, "run": str(runs[0])})
    new = set(store.query("SELECT * FROM incremental_results WHERE dependency_run_id = $r", {"r": runs[0]})
              ["config_json"].str.extract(r'"new": \[(\d+)')[0].astype(int))
    assert len(lineage) and set(lineage["target_class"]) == new and not set(lineage["source_class"]) & new
    assert lineage["source_name"].notna().all() and lineage["target_name"].notna().all()
    from neudep_assets.lib.report import write_dependency_graph

    classes = store.query("SELECT class_index, name FROM classes")
    out = write_dependency_graph(lineage, classes, root / "theta.json", "json")
    assert out.is_file() and out.stat().st_size > 0
    table = store.query((QUERIES / "incremental_table.sql").read_text())
    assert len(table) == 6 and table["seeds"].eq(2).all() and (table["base_model"] == "base-truncated").all()
    assert table["epoch_cached_s"].notna().sum() == 4 and (table["time_ratio_cached"].dropna() < 1).all()


def _check_times(res):
    """§3.2 time per epoch as the paper compares it: a head's epoch is the frozen base's forward pass over the
    train images (recorded) plus its updates over cached logits, against a measured all-class training epoch."""
    heads = res[res["method"] != "all_classes"]
    timing = heads["config_json"].map(lambda j: json.loads(j)["timing"])
    forward = timing.map(lambda t: t["base_forward_seconds"])
    assert (forward > 0).all() and (heads["epoch_seconds_cached"] > 0).all()
    assert np.allclose(heads["epoch_seconds"], forward + heads["epoch_seconds_cached"])
    assert (res["baseline_epoch_seconds"] > 0).all() and res["baseline_epoch_seconds"].nunique() == 1
    assert np.allclose(heads["time_ratio"], heads["epoch_seconds"] / heads["baseline_epoch_seconds"])
    assert np.allclose(heads["time_ratio_cached"], heads["epoch_seconds_cached"] / heads["baseline_epoch_seconds"])
    assert (heads["time_ratio"] > heads["time_ratio_cached"]).all()
    assert timing.map(lambda t: t["baseline_steps_per_epoch"]).eq(72 // 32).all()  # 12 classes × 6 images, batch 32
    full = res[res["method"] == "all_classes"]
    assert (full["time_ratio"] == 1).all() and full["epoch_seconds_cached"].isna().all()


READ = ["overall_acc", "base_acc", "new_acc", "pos_neg_acc"]


def test_children_flow_through_the_graph_and_table3_reads_them_back(tiny):
    root, instance = tiny
    store = ResultStore(root)
    assert {"cnn.ctl0", "cnn.reg0"} <= set(instance.get_dynamic_partitions("models"))
    kids = store.query("SELECT d.model, d.role, d.alpha, d.parent_sha256, c.checkpoint_sha256, c.parent_sha256 AS p2 "
                       "FROM derived_models d JOIN checkpoints c USING (checkpoint_sha256) ORDER BY d.model")
    parent = store.query("SELECT checkpoint_sha256 FROM checkpoints WHERE model = 'cnn'")["checkpoint_sha256"][0]
    assert kids["role"].tolist() == ["control", "regularized"] and kids["alpha"].tolist() == [0.0, 1.0]
    assert (kids["parent_sha256"] == parent).all() and (kids["p2"] == parent).all()
    # each child has logits on every split and its own certified within analysis, like any model
    for sha in kids["checkpoint_sha256"]:
        assert store.query("SELECT count(*) AS n FROM logit_sets WHERE checkpoint_sha256 = $s", {"s": sha})["n"][0] == 3
        assert store.query("SELECT count(*) AS n FROM dependency_runs WHERE kind = 'within' AND checkpoint_sha256 = $s "
                           "AND logit_gauge = 'raw'", {"s": sha})["n"][0] == 3  # the grid (+ the gauge cross-check)
    pairs = store.query("SELECT * FROM regularization_pairs")
    assert len(pairs) == 1 and "different scripts" in pairs["reason"][0] and pairs["class_a"][0] != pairs["class_b"][0]
    t3 = store.query((QUERIES / "regularization_table3.sql").read_text(), {"parent": "cnn"})
    assert t3["role"].tolist() == ["control", "regularized"]
    assert t3["ood_aupr"].between(0, 1).all() and t3["acc"].between(0, 1).all()
    # the coefficients are the children's stored edges at λ (read back, not recomputed)
    res = store.query("SELECT * FROM regularization_results ORDER BY role")
    edge = store.query("SELECT coef FROM dependencies d JOIN dependency_runs r USING (dependency_run_id, lambda_index) "
                       "WHERE d.dependency_run_id = $r AND abs(r.lambda_rel - 0.02) < 1e-9 AND target_class = $a "
                       "AND source_class = $b", {"r": res["dependency_run_id"][0], "a": int(pairs["class_a"][0]),
                                                 "b": int(pairs["class_b"][0])})
    assert t3["coef_ab"][0] == pytest.approx(round(float(edge["coef"].sum()), 4))


USES = ("incremental_heads", "regularized_checkpoints", "regularization_report")


def _use_partitions(root: Path, config: Path, instance) -> dict[str, tuple[list[str], set[str]]]:
    """Per use asset, as Dagster's instance has it: (its partition keys, those materialized)."""
    from neudep_assets.definitions import build_defs

    graph = build_defs(str(config), str(root)).resolve_asset_graph()
    with dg._core.definitions.partitions.context.partition_loading_context(dynamic_partitions_store=instance):
        return {key: (graph.get(dg.AssetKey(key)).partitions_def.get_partition_keys(),
                      set(instance.get_materialized_partitions(dg.AssetKey(key)))) for key in USES}


def test_the_uses_leave_no_partition_missing_for_the_derived_children(tiny):
    """cnn.ctl0 and cnn.reg0 are models (their own checkpoint → dependencies ran) but no partition of a
    use: nothing of the uses is left missing (grey in the UI) after the run, nor stale."""
    from neudep_assets.defs.jobs import _Staleness
    from neudep_assets.definitions import build_defs

    root, instance = tiny
    kids = {"cnn.ctl0", "cnn.reg0"}
    assert kids <= set(instance.get_materialized_partitions(dg.AssetKey("dependencies")))
    for key, (keys, done) in _use_partitions(root, TINY, instance).items():
        assert keys == ["cnn"] and set(keys) - done == set(), key
    graph = build_defs(str(TINY), str(root)).resolve_asset_graph()
    assert _Staleness(graph, instance).todo(list(USES), "cnn") == []


def test_second_run_recomputes_nothing(tiny):
    root, instance = tiny
    before = _files(root)
    run_pipeline(TINY, root, instance=instance, log=lambda *_: None)
    assert _files(root) == before


def test_the_papers_retrained_base_is_one_key_away(tiny, tmp_path):
    """incremental.base: retrain trains the base on the base classes; base_epochs > 0 trains the all-class
    baseline with the same shortened recipe (not the 2-epoch model)."""
    root, instance = tiny
    store = ResultStore(root)
    cfg = _variant(tmp_path, "retrain", **{"incremental.base": "retrain", "incremental.base_epochs": 1,
                                           "incremental.splits": ["all_but_one"], "incremental.seeds": 1,
                                           "regularization.models": []})
    run_pipeline(cfg, root, instance=instance, log=lambda *_: None)
    res = store.query("SELECT * FROM incremental_results WHERE base_origin = 'base-retrained'")
    assert len(res) == 3 and set(res["method"]) == {"theta_head", "linear_head", "all_classes"}
    base = store.query("SELECT c.*, p.model AS parent FROM checkpoints c JOIN checkpoints p "
                       "ON c.parent_sha256 = p.checkpoint_sha256 WHERE c.origin = 'base-retrained'")
    assert len(base) == 1 and base["num_classes"][0] == 11 and base["parent"][0] == "cnn"
    assert '"new": [' in base["config_json"][0]
    full = store.query("SELECT * FROM checkpoints WHERE checkpoint_sha256 = $s",
                       {"s": res["baseline_checkpoint_sha256"].iloc[0]})
    assert full["model"][0] == "cnn.all" and full["num_classes"][0] == 12 and '"epochs": 1' in full["config_json"][0]
    _check_times(res)
    table = store.query((QUERIES / "incremental_table.sql").read_text())  # the latest result: this one
    assert (table["base_model"] == "base-retrained").all() and len(table) == 3


def test_a_changed_parent_reruns_its_children(tiny, tmp_path):
    root, instance = tiny
    store = ResultStore(root)
    old = store.query("SELECT model, checkpoint_sha256, parent_sha256 FROM derived_models ORDER BY model")
    cfg = _variant(tmp_path, "seed1", **{"models.0.train.seed": 1, "incremental.models": []})
    run_pipeline(cfg, root, instance=instance, log=lambda *_: None)
    new = store.query("SELECT model, checkpoint_sha256, parent_sha256 FROM derived_models ORDER BY model")
    parent = store.query("SELECT checkpoint_sha256 FROM checkpoints WHERE model = 'cnn' ORDER BY written_at DESC")
    assert (new["parent_sha256"] == parent["checkpoint_sha256"][0]).all()
    assert not set(new["checkpoint_sha256"]) & set(old["checkpoint_sha256"])
    assert store.query("SELECT count(DISTINCT parent_sha256) AS n FROM regularization_results")["n"][0] == 2


def test_bad_pair_is_refused_before_any_training_and_writes_nothing(tiny, tmp_path):
    root, instance = tiny

    def files():  # the model's current pointer moves back to its seed-0 analysis (the test before changed it)
        return {p: t for p, t in _files(root).items() if "current_analyses" not in p.parts}

    before = files()
    cfg = _variant(tmp_path, "badpair", **{"regularization.pairs": [["no such glyph", "x latin small letter x"]]})
    with pytest.raises(PipelineError, match=r"regularization.pairs\[0\]: no class named 'no such glyph'"):
        run_pipeline(cfg, root, instance=instance, log=lambda *_: None)
    assert files() == before


def test_a_later_config_listing_a_child_under_a_use_runs_the_use_on_it(tiny, tmp_path):
    """A child is no partition of the uses until a config lists it there (as a model of its own, its
    checkpoint folder; its name is free once its parent is no longer regularized): then it is a new
    partition, missing, and the planner runs the use on it."""
    root, instance = tiny
    store = ResultStore(root)
    child = store.query("SELECT path FROM derived_models WHERE model = 'cnn.reg0' ORDER BY written_at DESC LIMIT 1")
    raw = yaml.safe_load(TINY.read_text())
    raw["models"].append({"name": "cnn.reg0", "checkpoint": str(child["path"][0])})
    raw["incremental"].update(models=["cnn.reg0"], splits=["all_but_one"], seeds=1)
    raw["regularization"]["models"] = []
    cfg = tmp_path / "promoted.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True))
    before = _use_partitions(root, cfg, instance)["incremental_heads"]
    assert before[0] == ["cnn"] and "cnn.reg0" not in before[1]  # not recorded as done by the earlier runs
    ran = run_pipeline(cfg, root, instance=instance, log=lambda *_: None)
    assert ("incremental_job", "cnn.reg0", ["incremental_heads"]) in ran
    keys, done = _use_partitions(root, cfg, instance)["incremental_heads"]
    assert keys == ["cnn", "cnn.reg0"] and set(keys) <= done
    assert set(store.query("SELECT DISTINCT model FROM incremental_results")["model"]) == {"cnn", "cnn.reg0"}


@pytest.mark.parametrize("change, message", [
    ({"regularization.alpha": -0.5}, r"regularization.alpha: must be ≥ 0 \(got -0.5\)"),
    ({"regularization.pairs": [["a", "a"]]}, r"regularization.pairs\[0\] names the same class twice"),
    ({"incremental.splits": ["95/5"], "dataset.glyphs.n_classes": 9}, r"incremental.splits: split '95/5' of 9 classes "
                                                                       "leaves no new class"),
    ({"incremental.splits": ["80/20"]}, r"incremental.splits\[0\]: must be one of 90/10, 95/5, all_but_one \(got '80/20'\)"),
    ({"regularization.lambda_rel": 0.3}, r"regularization.lambda_rel = 0.3 is not on dependencies.lambdas"),
])
def test_bad_config_is_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_variant(tmp_path, "bad", **change))


def test_imagefolder_truncated_base_and_ood_sharing_classes(tmp_path):
    """A user's own model and data: the base is the model with the new rows removed; an ood split
    sharing a class with the training classes is refused before the fine-tune, and the fixed rerun works."""
    from neudep_assets.lib.models import ModelSpec, create_model, save_checkpoint

    rng = np.random.default_rng(0)
    _image_folder(tmp_path / "train", 5, rng)
    _image_folder(tmp_path / "val", 3, rng)
    _image_folder(tmp_path / "ood", 2, rng)
    spec = ModelSpec.from_dict({"name": "mine", "arch": "resnet10t", "model_args": {"channels": [8, 8, 16, 16]}})
    model = create_model(spec, num_classes=len(CLASSES), in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3, img_size=24)
    save_checkpoint(model, tmp_path / "ckpt", model_args=spec.model_args)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("dataset: {kind: imagefolder, name: fb, splits: {train: train, val: val, ood: ood}}\n"
                   "models: [{name: mine, checkpoint: ckpt}]\n"
                   "dependencies: {lambdas: [0.5, 0.1]}\n"
                   "incremental: {models: [mine], splits: [all_but_one], seeds: 1, epochs: 2}\n"
                   "regularization: {models: [mine], pairs: [[apple, boat]], logit_gauge: raw, max_steps: 2,"
                   " batch_size: 4}\n")
    data, instance = tmp_path / "data", dg.DagsterInstance.ephemeral()
    with pytest.raises(PipelineError, match=r"dataset.splits.ood.*shares 4 class"):
        run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    store = ResultStore(data)
    assert store.query("SELECT count(*) AS n FROM derived_models")["n"][0] == 0
    assert store.query("SELECT origin FROM checkpoints WHERE origin LIKE 'base%'")["origin"].tolist() == ["base-truncated"]
    shutil.rmtree(tmp_path / "ood")
    (tmp_path / "ood" / "noclass").mkdir(parents=True)
    for k, f in enumerate(sorted((tmp_path / "val" / "apple").iterdir())):
        shutil.copy(f, tmp_path / "ood" / "noclass" / f"{k}.png")
    run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    t3 = store.query((QUERIES / "regularization_table3.sql").read_text(), {"parent": "mine"})
    assert t3["role"].tolist() == ["control", "regularized"] and t3["pair"][0].startswith("apple")
