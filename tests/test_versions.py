"""Checkpoint versions of a watched model: drop a folder, replace its weights, compare the two
versions in SQL; a diverged checkpoint (NaN logits) stops the run and writes nothing downstream."""

import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import torch
from safetensors.torch import load_file, save_file

from neudep_assets.cli import PipelineError, run_pipeline
from neudep_assets.lib.models import ModelSpec, create_model, save_checkpoint, weights_sha256
from neudep_assets.lib.store import ResultStore

TINY = Path(__file__).with_name("tiny.yaml")
SPEC = ModelSpec.from_dict({"name": "mine", "arch": "resnet10t", "model_args": {"channels": [8, 8, 8, 8]}})


def _rewrite_weights(folder: Path, fn) -> str:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    fn(state)
    tmp = path.with_name(".model.tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    return weights_sha256(folder)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions")
    cfg = tmp / "watch.yaml"
    cfg.write_text(TINY.read_text().split("models:")[0] + "watch: [incoming]\ndependencies: {lambdas: [0.5, 0.1]}\n")
    data, incoming = tmp / "data", tmp / "incoming"
    torch.manual_seed(0)
    save_checkpoint(create_model(SPEC, num_classes=12, in_chans=1), incoming / "mine", model_args=SPEC.model_args)
    instance = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    first = run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    v1 = weights_sha256(incoming / "mine")
    # version 2: the same model trained on (here: its head moved)
    v2 = _rewrite_weights(incoming / "mine", lambda s: s.__setitem__("fc.weight", s["fc.weight"] * 1.5 + 0.05))
    second = run_pipeline(cfg, data, instance=instance, log=lambda *_: None)
    return dict(cfg=cfg, data=data, incoming=incoming, instance=instance, v1=v1, v2=v2, first=first,
                second=second, seconds=time.perf_counter() - t0)


def test_a_dropped_folder_is_a_model_and_a_new_version_reruns_only_it(versions):
    assert ("model_job", "mine", ["checkpoint", "logits", "moments", "dependencies"]) in versions["first"]
    assert [s[:2] for s in versions["second"]] == [("model_job", "mine"), ("target_job", "mine"),
                                                   ("comparisons_job", None)]
    store = ResultStore(versions["data"])
    shas = store.query("SELECT DISTINCT checkpoint_sha256 FROM dependency_runs WHERE model = 'mine'")
    assert set(shas["checkpoint_sha256"]) == {versions["v1"], versions["v2"]}  # both versions kept


def test_dependencies_current_holds_the_latest_version_only(versions):
    store = ResultStore(versions["data"])
    cur = store.query("SELECT DISTINCT model, checkpoint_sha256 FROM dependencies_current")
    assert cur.to_dict("records") == [{"model": "mine", "checkpoint_sha256": versions["v2"]}]
    n_v2 = store.query("SELECT count(*) AS n FROM dependency_lineage WHERE checkpoint_sha256 = $s",
                       {"s": versions["v2"]})["n"][0]
    assert store.query("SELECT count(*) AS n FROM dependencies_current")["n"][0] == n_v2 > 0


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_checkpoint_diff_matches_the_edge_sets(versions, threshold):
    store = ResultStore(versions["data"])
    query = (Path(__file__).parents[1] / "sql" / "queries" / "checkpoint_diff.sql").read_text()
    diff = store.query(query, {"model": "mine", "old": versions["v1"][:10], "new": versions["v2"][:10],
                               "lam": 0.1, "gauge": "raw", "threshold": threshold})
    # reference: the two edge sets (raw gauge; one raw analysis per version here) side by side in pandas
    edges = store.query("SELECT checkpoint_sha256 AS sha, target_class, source_class, coef FROM dependency_lineage "
                        "WHERE model = 'mine' AND abs(lambda_rel - 0.1) < 1e-9 AND logit_gauge = 'raw'")
    assert len(edges) == len(edges.drop_duplicates(["sha", "target_class", "source_class"]))
    old = {(r.target_class, r.source_class): r.coef for r in edges[edges.sha == versions["v1"]].itertuples()}
    new = {(r.target_class, r.source_class): r.coef for r in edges[edges.sha == versions["v2"]].itertuples()}
    expect = {"gained": set(new) - set(old), "lost": set(old) - set(new),
              "moved": {k for k in set(old) & set(new) if abs(new[k] - old[k]) > threshold}}
    got = {c: {(int(r.target_class), int(r.source_class)) for r in diff[diff.change == c].itertuples()}
           for c in ("gained", "lost", "moved")}
    assert got == expect
    assert sum(map(len, expect.values())) > 0  # the versions do differ


def test_diverged_checkpoint_stops_naming_model_split_sample_and_writes_nothing_downstream(versions):
    store = ResultStore(versions["data"])
    before = {t: store.query(f"SELECT count(*) AS n FROM {t}")["n"][0]
              for t in ("logit_sets", "moments", "dependency_runs", "dependencies")}
    folder = versions["incoming"] / "mine"
    good = folder.with_name("mine.good")
    shutil.copytree(folder, good)
    try:
        _rewrite_weights(folder, lambda s: s["fc.bias"].fill_(float("nan")))
        with pytest.raises(PipelineError, match=r"model mine .*split train.*first at sample 0"):
            run_pipeline(versions["cfg"], versions["data"], instance=versions["instance"], log=lambda *_: None)
        after = {t: store.query(f"SELECT count(*) AS n FROM {t}")["n"][0] for t in before}
        assert after == before
        cur = store.query("SELECT DISTINCT checkpoint_sha256 FROM dependencies_current")["checkpoint_sha256"]
        assert list(cur) == [versions["v2"]]  # the current version is still the last good one
    finally:
        shutil.rmtree(folder)
        good.rename(folder)
