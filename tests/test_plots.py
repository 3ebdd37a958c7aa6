"""Pictures are valid, small PNGs; graphs survive a GraphML / node-link JSON round trip."""

from __future__ import annotations

import io
import json
import struct

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.report import graph_export, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82")  # complete file
    return w, h


def check_png(data: bytes, max_kb: int = 80):
    assert isinstance(data, bytes)
    w, h = png_size(data)
    assert 300 <= w <= 1200 and 200 <= h <= 1000
    assert 2_000 < len(data) < max_kb * 1024
    from matplotlib import image

    img = image.imread(io.BytesIO(data))  # decodes
    assert img.shape[:2] == (h, w)
    ink = (img[..., :3] < 0.9).any(axis=-1).mean()
    assert 0.005 < ink < 0.6  # something drawn, not a blank (or black) canvas
    return img


def glyph(seed: int) -> np.ndarray:
    """A small white-on-dark image like the glyph dataset's (uint8 32×32)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((32, 32), np.uint8)
    r, c = rng.integers(4, 20, size=2)
    img[r:r + 10, c:c + 3] = 255
    img[r:r + 3, c:c + 9] = 200
    return img


def test_star_plot_text_and_images():
    sources = [("lorikeet", 0.81), ("toucan", 0.33), ("sulphur-crested cockatoo, Kakatoe galerita", -0.2),
               ("bee eater", 0.1)]
    check_png(plots.star_plot("macaw", sources, title="ResNet-50, λ = 0.1 λ_max"))
    # glyph classes: names with non-Latin characters, images at the nodes (also CHW float images)
    names = ["É latin capital letter e with acute", "Ж cyrillic capital letter zhe", "Ω greek capital letter omega",
             "ա armenian small letter ayb", "3 digit three"]
    imgs = [glyph(k) for k in range(5)]
    imgs[2] = imgs[2][None].astype(np.float32) / 255.0
    check_png(plots.star_plot(names[0], [(n, c) for n, c in zip(names[1:], [0.9, -0.4, 0.2, 0.05])],
                              target_image=imgs[0], source_images=imgs[1:]))
    check_png(plots.star_plot("É", [("E", 0.8), ("e", 0.3)], target_image=None, source_images=[imgs[1], None]))
    many = [(f"class {k}", (-1) ** k * 0.9 ** k) for k in range(40)]
    check_png(plots.star_plot("target", many, max_sources=12))
    check_png(plots.star_plot("lonely", []))  # no source at all still draws
    with pytest.raises(ValueError, match="source_images"):
        plots.star_plot("t", [("a", 1.0)], source_images=[])


def test_fig3_and_path_plots():
    rng = np.random.default_rng(0)
    k = 200
    ratio = rng.random(k)
    coef = np.where(ratio > 0.6, rng.normal(size=k), 0.0)
    coef[3], ratio[3] = 0.4, 0.05  # a Conjecture-1 violation
    df = pd.DataFrame({"source": np.arange(k), "corr_ratio": ratio, "coef": coef, "abs_coef": np.abs(coef),
                       "lambda_ratio": 0.3, "thm3_screened": ratio < 0.1, "conj1_screened": ratio < 0.3})
    check_png(plots.fig3_plot(df, title="macaw, λ = 0.3 λ_max"))
    check_png(plots.fig3_plot(df.drop(columns=["thm3_screened"])))

    L, T = 5, 50
    rel = np.array([0.01, 0.03, 0.1, 0.3, 0.9])
    metrics = pd.DataFrame({
        "lambda_index": np.repeat(np.arange(L), T), "target": np.tile(np.arange(T), L),
        "n_sources": rng.poisson(np.repeat([30, 15, 6, 2, 0.3], T)),
        "rel_err": np.repeat([0.02, 0.05, 0.12, 0.3, 0.8], T) * rng.uniform(0.5, 1.5, L * T),
    })
    check_png(plots.sparsity_plot(metrics))  # x = λ index
    check_png(plots.sparsity_plot(metrics.assign(lambda_rel=rel[metrics.lambda_index])))  # x = λ/λ_max, log

    screen = pd.DataFrame({
        "lambda_index": np.repeat(np.arange(L), T), "target": np.tile(np.arange(T), L),
        "lambda_ratio": rel[np.repeat(np.arange(L), T)], "n_candidates": 99,
        "n_nonzero": metrics.n_sources.clip(upper=99),
        "thm3_screened": np.repeat([0, 0, 5, 40, 95], T), "thm3_violations": 0,
        "conj1_screened": np.repeat([5, 20, 60, 90, 98], T), "conj1_violations": np.repeat([2, 1, 1, 0, 0], T),
    })
    check_png(plots.screening_plot(screen))


def _graph_frames():
    nodes = pd.DataFrame({"model": ["r18"] * 4 + ["vit"] * 2, "class_index": [0, 1, 2, 3, 0, 1],
                          "name": ["É latin capital letter e with acute", "e", "E", "3", "É", "e"],
                          "label": ["É", "e", "E", "3", "É", "e"]})
    edges = pd.DataFrame({
        "source_model": ["r18", "r18", "vit", "vit"], "source_class": [1, 2, 1, 5],
        "target_model": ["r18", "r18", "r18", "r18"], "target_class": [0, 0, 0, 3],
        "coef": [0.81, -0.25, 0.4, 1e-3], "lambda_rel": [0.1, 0.1, 0.1, 0.1], "run": ["a", "a", "b", "b"],
        "rel_err": [0.05, 0.05, np.nan, 0.2],
    })
    return edges, nodes


def test_dependency_graph_and_round_trips(tmp_path):
    edges, nodes = _graph_frames()
    G = graph_export.dependency_graph(edges, nodes)
    assert G.is_directed() and G.number_of_nodes() == 7 and G.number_of_edges() == 4  # vit:5 added
    assert G.nodes["vit:5"]["name"] == "vit:5"
    e = G.edges["r18:2", "r18:0"]
    assert e["weight"] == -0.25 and e["sign"] == -1 and e["lambda_rel"] == 0.1 and e["run"] == "a"
    assert "rel_err" not in G.edges["vit:1", "r18:0"]  # NaN attributes are left out
    assert G.nodes["r18:0"]["label"] == "É"

    p = graph_export.write_graph(G, tmp_path / "deps.graphml")
    H = nx.read_graphml(p)
    assert isinstance(H, nx.DiGraph) and set(H.nodes) == set(G.nodes) and set(H.edges) == set(G.edges)
    assert H.edges["r18:1", "r18:0"]["weight"] == pytest.approx(0.81)
    assert H.nodes["r18:0"]["name"] == "É latin capital letter e with acute" and H.nodes["r18:3"]["class_index"] == 3

    p = graph_export.write_graph(G, tmp_path / "out" / "deps.json", fmt="json")
    data = json.loads(p.read_text(encoding="utf-8"))
    J = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    assert set(J.edges) == set(G.edges)
    assert J.edges["vit:5", "r18:3"]["weight"] == pytest.approx(1e-3)
    assert J.nodes["vit:0"]["model"] == "vit"
    assert not list(tmp_path.rglob("*.tmp"))  # atomic: nothing left behind


def test_graph_errors(tmp_path):
    edges, nodes = _graph_frames()
    G = graph_export.dependency_graph(edges, nodes)
    with pytest.raises(ValueError, match="format"):
        graph_export.write_graph(G, tmp_path / "g.gexf", fmt="gexf")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="more than once"):
        graph_export.dependency_graph(pd.concat([edges, edges.iloc[:1]]), nodes)
    with pytest.raises(ValueError, match="coef"):
        graph_export.dependency_graph(edges.drop(columns=["coef"]), nodes)
    # a failed write leaves the old file in place
    p = graph_export.write_graph(G, tmp_path / "g.json", fmt="json")
    before = p.read_bytes()
    G.add_node("bad", obj=object())
    with pytest.raises(Exception):
        graph_export.write_graph(G, p, fmt="graphml")
    assert p.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def test_screening_plot_when_a_rule_screens_nothing():
    """A rule that screens nothing at any λ has an undefined violation rate: still a picture."""
    import pandas as pd

    from neudep_assets.lib.report.plots import screening_plot

    df = pd.DataFrame({"lambda_index": [0, 1, 2], "lambda_rel": [0.5, 0.1, 0.02], "n_candidates": [9, 9, 9],
                       "n_nonzero": [1, 3, 6], "thm3_screened": [0, 0, 0], "thm3_violations": [0, 0, 0],
                       "conj1_screened": [0, 0, 0], "conj1_violations": [0, 0, 0]})
    assert screening_plot(df).startswith(b"\x89PNG")


def _table3(pairs=("glyph zero  ~  a very long class name indeed", "b  ~  c")) -> pd.DataFrame:
    return pd.DataFrame([dict(parent_model="cnn", pair=p, role=r, alpha=a, seeds=2, acc=acc, acc_std=0.01, coef_ab=c,
                              coef_ab_std=0.0, coef_ba=-c / 2, coef_ba_std=0.01, parent_coef=0.3, ood_aupr=0.6,
                              ood_aupr_std=0.02, lambda_rel=0.02, logit_gauge="raw")
                         for p in pairs
                         for r, a, acc, c in (("control", 0.0, 0.8, 0.25), ("regularized", 1.0, 0.78, 0.01))])


def test_regularization_plot_has_one_axis_per_reading_and_no_overlapping_labels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    fig = plots.regularization_figure(_table3(), title="cnn: dependency regularizer (Table 3)")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["val accuracy (%)", "pair's |coefficient| at λ (target ← source)",
                                               "OOD AUPR"]  # accuracy and coefficients never share an axis
    assert axes[0].get_ylim()[1] > 50 and axes[2].get_ylim()[1] <= 1.02  # % and AUPR on their own scales
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    hidden = set()  # tick labels of ticks outside the view limits: not drawn
    for ax in axes:
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            hidden |= {id(t.label1) for t in axis.get_major_ticks() if not lo - 1e-9 <= t.get_loc() <= hi + 1e-9}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    assert len(boxes) > 15
    for i, (a, ba) in enumerate(boxes):
        assert 0 <= ba.x0 and ba.x1 <= fig.bbox.width + 1 and 0 <= ba.y0 and ba.y1 <= fig.bbox.height + 1, a
        for b, bb in boxes[i + 1:]:
            assert not ba.overlaps(bb), (a, b)
    check_png(plots.regularization_plot(_table3()), max_kb=120)


def test_the_old_single_axis_bars_would_fail_the_overlap_test():
    """The check above can fail: two long labels put on one crowded axis overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.set_xticks([0, 1], ["coef_ab glyph zero  ~  a very long", "ood_aupr glyph zero  ~  a very long"])
    renderer = FigureCanvasAgg(fig).get_renderer()
    a, b = (t.get_window_extent(renderer) for t in ax.get_xticklabels())
    assert a.overlaps(b)
