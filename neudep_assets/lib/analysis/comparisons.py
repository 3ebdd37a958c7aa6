"""Comparing dependency graphs: within vs between, across λ, across checkpoints of one model.

A graph is the set of directed edges (source class → target class) with a nonzero coefficient in one
analysis at one λ. Between-model edges (f's class j → g's class i) are compared with within-model
edges (j → i) *through class identity* (f's class j is taken to be g's class j). Without that
mapping the two edge sets live on different nodes and are disjoint by construction, so the
"unmapped" figure we report is the Jaccard that two random graphs of the same edge counts on the
same n(n−1) possible edges would have: the chance level the mapped overlap is to be read against.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd


def jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else float("nan")


def chance_jaccard(k1: int, k2: int, n_possible: int) -> float:
    """Expected Jaccard of two uniformly random edge sets of sizes k1, k2 among n_possible edges."""
    if n_possible <= 0 or k1 + k2 == 0:
        return float("nan")
    inter = k1 * k2 / n_possible
    return inter / (k1 + k2 - inter)


def edge_sets(edges: pd.DataFrame) -> dict[tuple[str, int], set[tuple[int, int]]]:
    """(dependency_run_id, lambda_index) → {(source_class, target_class)}."""
    out: dict[tuple[str, int], set] = {}
    for (run, li), g in edges.groupby(["dependency_run_id", "lambda_index"]):
        out[(run, int(li))] = set(zip(g["source_class"].astype(int), g["target_class"].astype(int)))
    return out


def compare(runs: pd.DataFrame, edges: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """All graph comparisons as long rows: kind, model, source_model, lambda_rel, metric, value, detail,
    logit_gauge.

    `runs`: dependency_runs rows (dependency_run_id, lambda_index, lambda_rel, kind, model, source_model,
    checkpoint_sha256, source_checkpoint_sha256, logit_gauge); `edges`: dependencies rows of those runs.
    Graphs of different logit gauges are never compared with each other (a missing gauge is raw).
    """
    sets = edge_sets(edges)
    possible = n_classes * (n_classes - 1)
    runs = runs.copy()
    runs["logit_gauge"] = runs["logit_gauge"].fillna("raw") if "logit_gauge" in runs else "raw"
    runs["edges"] = [sets.get((r, int(li)), set()) for r, li in zip(runs["dependency_run_id"], runs["lambda_index"])]
    rows: list[dict] = []

    def add(kind, r, metric, value, detail=""):
        rows.append({"kind": kind, "model": r["model"], "source_model": r["source_model"],
                     "lambda_rel": r["lambda_rel"], "metric": metric, "value": float(value), "detail": detail,
                     "logit_gauge": r["logit_gauge"]})

    within = runs[runs["kind"] == "within"]
    by_ckpt = {(r["checkpoint_sha256"], r["logit_gauge"], r["lambda_rel"]): r for _, r in within.iterrows()}
    for _, r in runs[runs["kind"] == "between"].iterrows():
        for side, sha in (("target", r["checkpoint_sha256"]), ("source", r["source_checkpoint_sha256"])):
            w = by_ckpt.get((sha, r["logit_gauge"], r["lambda_rel"]))
            if w is None:
                continue
            add("within_vs_between", r, f"jaccard_vs_within_{side}", jaccard(r["edges"], w["edges"]),
                f"between {r['source_model']}→{r['model']} vs within {w['model']}")
            add("within_vs_between", r, f"jaccard_chance_vs_within_{side}",
                chance_jaccard(len(r["edges"]), len(w["edges"]), possible), "unmapped: chance level")

    for run_id, g in runs.groupby("dependency_run_id"):
        g = g.sort_values("lambda_index")
        for (_, a), (_, b) in itertools.pairwise(g.iterrows()):
            add("lambda_stability", b, "jaccard_with_previous_lambda", jaccard(a["edges"], b["edges"]),
                f"λ {a['lambda_rel']:g} → {b['lambda_rel']:g}")
            kept = len(a["edges"] & b["edges"]) / len(a["edges"]) if a["edges"] else float("nan")
            add("lambda_stability", b, "share_of_previous_edges_kept", kept, f"λ {a['lambda_rel']:g} → {b['lambda_rel']:g}")

    for (model, source, kind, _gauge, lam), g in runs.groupby(["model", "source_model", "kind", "logit_gauge",
                                                                "lambda_rel"], dropna=False):
        versions = g.drop_duplicates(["checkpoint_sha256", "source_checkpoint_sha256"])
        for (_, a), (_, b) in itertools.combinations(versions.iterrows(), 2):
            add("checkpoint_stability", b, "jaccard_across_checkpoints", jaccard(a["edges"], b["edges"]),
                f"{kind}: {a['checkpoint_sha256'][:12]} vs {b['checkpoint_sha256'][:12]}")
    out = pd.DataFrame(rows, columns=["kind", "model", "source_model", "lambda_rel", "metric", "value", "detail",
                                      "logit_gauge"])
    out["value"] = out["value"].astype(np.float64)
    return out
