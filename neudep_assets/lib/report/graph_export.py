"""Dependencies as a directed graph (source class → target class, weighted by the coefficient), for
Gephi / Cytoscape / yEd (GraphML) or for the web (node-link JSON)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from neudep_assets.lib.store import atomic_write

EDGE_KEYS = ("source_model", "source_class", "target_model", "target_class", "coef")
NODE_KEYS = ("model", "class_index", "name")
FORMATS = ("graphml", "json")


def node_id(model: str, class_index: int) -> str:
    """The id of a class node: ``<model>:<class index>``."""
    return f"{model}:{int(class_index)}"


def _plain(v):
    """A value GraphML and JSON can hold (str, int, float, bool), or None to leave the attribute out."""
    if v is None:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, (pd.Timestamp,)):
        return v.isoformat()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def _attrs(row: dict, skip) -> dict:
    out = {}
    for k, v in row.items():
        if k in skip:
            continue
        p = _plain(v)
        if p is not None:
            out[str(k)] = p
    return out


def dependency_graph(edges: pd.DataFrame, nodes: pd.DataFrame) -> nx.DiGraph:
    """A DiGraph with one node per class (id ``model:class_index``; attributes model, class_index,
    name and any other column of ``nodes``) and one edge source → target per row of ``edges``
    (attribute ``weight`` = ``coef``, plus the other columns, e.g. lambda_rel, run ids).

    Within-model edges join nodes of one model, between-model edges nodes of two. Classes that appear
    in ``edges`` but not in ``nodes`` are added with their id as name. An edge listed twice (e.g. the
    same pair at two λ) is ambiguous in a DiGraph: raise ValueError, filter to one λ first.
    """
    missing = [c for c in EDGE_KEYS if c not in edges.columns]
    if missing:
        raise ValueError(f"edges lack column(s) {missing}; need {list(EDGE_KEYS)}")
    missing = [c for c in NODE_KEYS if c not in nodes.columns]
    if missing:
        raise ValueError(f"nodes lack column(s) {missing}; need {list(NODE_KEYS)}")
    G = nx.DiGraph()
    for row in nodes.to_dict("records"):
        nid = node_id(row["model"], row["class_index"])
        G.add_node(nid, **{"model": str(row["model"]), "class_index": int(row["class_index"]),
                           "name": str(row["name"]), **_attrs(row, NODE_KEYS)})
    seen = set()
    for row in edges.to_dict("records"):
        u = node_id(row["source_model"], row["source_class"])
        v = node_id(row["target_model"], row["target_class"])
        if (u, v) in seen:
            raise ValueError(f"edge {u} → {v} appears more than once (several λ or runs?): filter edges first")
        seen.add((u, v))
        for nid, model, cls in ((u, row["source_model"], row["source_class"]),
                                (v, row["target_model"], row["target_class"])):
            if nid not in G:
                G.add_node(nid, model=str(model), class_index=int(cls), name=nid)
        coef = float(row["coef"])
        G.add_edge(u, v, weight=coef, coef=coef, abs_weight=abs(coef), sign=1 if coef >= 0 else -1,
                   **_attrs(row, EDGE_KEYS))
    return G


def _json_default(o):
    p = _plain(o)
    if p is None and o is not None:
        return None
    if p is not None:
        return p
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_graph(G: nx.DiGraph, path: Path, fmt: str = "graphml") -> Path:
    """Write ``G`` to ``path`` as GraphML or node-link JSON (``nx.node_link_data(G, edges="edges")``;
    read back with ``nx.node_link_graph(data, edges="edges")``). The file is written under a
    temporary name in the same folder and renamed into place, so a reader never sees half a file.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown graph format {fmt!r}; use one of {list(FORMATS)}")
    def write(fh) -> None:
        if fmt == "graphml":
            nx.write_graphml(G, fh, named_key_ids=True)
        else:
            data = nx.node_link_data(G, edges="edges")
            fh.write(json.dumps(data, default=_json_default, ensure_ascii=False, indent=1).encode("utf-8"))

    atomic_write(Path(path), write)
    return path
