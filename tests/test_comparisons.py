"""Graph comparisons on planted edge sets with known overlaps."""

import math

import pandas as pd
import pytest

from neudep_assets.lib.analysis.comparisons import chance_jaccard, compare, jaccard


def _runs_and_edges():
    runs, edges = [], []
    graphs = {  # run -> (kind, model, source_model, sha, source_sha, {λ index: edges})
        "w-vit": ("within", "vit", "vit", "v1", "v1", {0: {(1, 0), (2, 0)}, 1: {(1, 0), (2, 0), (3, 0)}}),
        "w-vit2": ("within", "vit", "vit", "v2", "v2", {0: {(1, 0)}, 1: {(1, 0), (4, 0)}}),
        "b-cnn-vit": ("between", "vit", "cnn", "v1", "c1", {0: {(1, 0), (5, 0)}, 1: {(1, 0)}}),
    }
    for run, (kind, model, src, sha, ssha, per_l) in graphs.items():
        for li, es in per_l.items():
            runs.append({"dependency_run_id": run, "lambda_index": li, "lambda_rel": [0.2, 0.1][li], "kind": kind,
                         "model": model, "source_model": src, "checkpoint_sha256": sha, "source_checkpoint_sha256": ssha})
            edges += [{"dependency_run_id": run, "lambda_index": li, "source_class": s, "target_class": t, "coef": 1.0}
                      for s, t in es]
    return pd.DataFrame(runs), pd.DataFrame(edges)


def _value(out, kind, metric, **where):
    sel = out[(out["kind"] == kind) & (out["metric"] == metric)]
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel["value"].iloc[0]


def test_planted_overlaps():
    runs, edges = _runs_and_edges()
    out = compare(runs, edges, n_classes=6)
    # between {(1,0),(5,0)} vs within vit v1 {(1,0),(2,0)} at λ=0.2: 1 shared of 3
    assert _value(out, "within_vs_between", "jaccard_vs_within_target", lambda_rel=0.2) == pytest.approx(1 / 3)
    # λ=0.1: {(1,0)} vs {(1,0),(2,0),(3,0)}
    assert _value(out, "within_vs_between", "jaccard_vs_within_target", lambda_rel=0.1) == pytest.approx(1 / 3)
    # no within run for the source checkpoint c1: no row
    assert out[out["metric"] == "jaccard_vs_within_source"].empty
    # stability across λ for w-vit: {(1,0),(2,0)} → {(1,0),(2,0),(3,0)}: J = 2/3, all previous kept
    sel = out[(out["kind"] == "lambda_stability") & (out["model"] == "vit") & (out["source_model"] == "vit")]
    assert sorted(sel[sel["metric"] == "jaccard_with_previous_lambda"]["value"]) == pytest.approx([0.5, 2 / 3])
    # across checkpoints of vit within at λ=0.2: {(1,0),(2,0)} vs {(1,0)} = 1/2
    assert _value(out, "checkpoint_stability", "jaccard_across_checkpoints", lambda_rel=0.2,
                  source_model="vit") == pytest.approx(0.5)


def test_jaccard_helpers():
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    assert math.isnan(jaccard(set(), set()))
    # identical full graphs: chance Jaccard is 1
    assert chance_jaccard(30, 30, 30) == pytest.approx(1.0)
    assert chance_jaccard(1, 1, 1000) == pytest.approx(1 / 1000 / (2 - 1 / 1000))
