"""Turning results into pictures and graph files (the paper's Fig. 2 and Fig. 3, GraphML / JSON)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neudep_assets.lib.analysis import theory
from neudep_assets.lib.analysis.dependencies import DependencyAnalysis
from neudep_assets.lib.data import PreparedDataset, class_examples
from neudep_assets.lib.report import plots
from neudep_assets.lib.report.graph_export import dependency_graph, write_graph


def star_pictures(edges: pd.DataFrame, per_target: pd.DataFrame, ds: PreparedDataset, lambda_index: int,
                  targets: list[int], title: str, lambda_value: float) -> list[tuple[str, bytes]]:
    """One star picture per target: its sources at one λ with coefficients, class names (not only the
    glyph: "ο" and "o" look alike) and glyph images."""
    examples = class_examples(ds)
    out = []
    for t in targets:
        e = edges[(edges["lambda_index"] == lambda_index) & (edges["target_class"] == t)]
        e = e.reindex(e["coef"].abs().sort_values(ascending=False).index)
        m = per_target[(per_target["lambda_index"] == lambda_index) & (per_target["target_class"] == t)]
        rel = float(m["rel_err"].iloc[0]) if len(m) else float("nan")
        png = plots.star_plot(
            ds.class_names[t], [(ds.class_names[s], float(c)) for s, c in zip(e["source_class"], e["coef"])],
            target_image=examples.get(t),
            source_images=[examples.get(int(s)) for s in e["source_class"]] if examples else None,
            title=f"{title}: {ds.class_names[t]}, λ={lambda_value:g}")
        out.append((f"{ds.class_names[t]} (Rel Err {100 * rel:.1f}%)", png))
    return out


def graph_of(lineage: pd.DataFrame, classes: pd.DataFrame) -> "nx.DiGraph":  # noqa: F821
    """The dependency graph of `dependency_lineage` rows (one λ) with every class of both models as nodes."""
    models = sorted(set(lineage["model"]) | set(lineage["source_model"]))
    nodes = pd.concat([classes.assign(model=m) for m in models], ignore_index=True)
    edges = lineage.rename(columns={"model": "target_model"})[
        ["source_model", "source_class", "target_model", "target_class", "coef", "lambda_rel", "rel_err",
         "checkpoint_sha256", "dependency_run_id"]]
    return dependency_graph(edges, nodes[["model", "class_index", "name"]])


def write_dependency_graph(lineage: pd.DataFrame, classes: pd.DataFrame, path: Path, fmt: str) -> Path:
    if lineage.empty:
        raise ValueError("no dependency edges match the selection (model, source model, λ)")
    if lineage["dependency_run_id"].nunique() > 1:
        raise ValueError(f"the selection spans {lineage['dependency_run_id'].nunique()} analyses "
                         "(several checkpoints?); pass --run to choose one")
    return write_graph(graph_of(lineage, classes), path, fmt)


def fig3_png(C: np.ndarray, res: DependencyAnalysis, target_class: int, lambda_index: int, *, title: str,
             cross: np.ndarray | None = None, target_second_moment: np.ndarray | None = None) -> bytes:
    """The paper's Fig. 3 for one target and λ: covariance ratio against |θ_j|, with λ/λ_max."""
    pos = int(np.flatnonzero(np.asarray(res.path.targets) == target_class)[0])
    df = theory.fig3_data(C, res.path, pos, lambda_index, cross=cross, target_second_moment=target_second_moment,
                         spectral=res.spectral)
    return plots.fig3_plot(df, title=title)
