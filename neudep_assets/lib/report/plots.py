"""Pictures of dependencies (paper Fig. 2 and Fig. 3) and of whole λ paths, as small PNG bytes.

Every function draws with matplotlib's Agg backend on its own Figure (no pyplot state, safe in
threads and in Dagster steps) and returns the PNG file's bytes, sized for the Dagster UI's metadata
view and for Markdown (≈ 500–900 px wide, tens of KB).
"""

from __future__ import annotations

import io
import logging
import textwrap
import warnings
from typing import Sequence

import numpy as np

_FONTS = ["DejaVu Sans", "DejaVu Serif", "STIXGeneral", "DejaVu Sans Mono"]  # glyph classes: fall back per glyph
_POS, _NEG, _GREY, _ACCENT = "#1f5fa8", "#c0392b", "#9a9a9a", "#e67e22"


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph … missing from font(s)" for exotic class names
        fig.savefig(buf, format="png", dpi=100, pil_kwargs={"optimize": True})
    return buf.getvalue()


def _rc():
    import matplotlib

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return matplotlib.rc_context({"font.family": _FONTS, "font.size": 9, "axes.titlesize": 10,
                                  "axes.spines.top": False, "axes.spines.right": False})


def _short(name: str, width: int = 18, lines: int = 2) -> str:
    parts = textwrap.wrap(str(name), width=width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1] + "…"
    return "\n".join(parts)


def _gray_image(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # CHW → HWC
    if a.ndim == 3:
        a = a.mean(axis=-1) if a.shape[-1] == 3 else a[..., 0]
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


# ------------------------------------------------------------------------------------------------
# Fig. 2: a star


def star_plot(target_label: str, sources: list[tuple[str, float]], *, target_image: np.ndarray | None = None,
              source_images: list[np.ndarray] | None = None, title: str = "", max_sources: int = 12) -> bytes:
    """The paper's Fig. 2: the target class in the centre, its sources around it, each spoke labelled
    with the coefficient (blue > 0, red < 0, width ∝ |coef|) and each node with the class name; with
    images (e.g. one glyph per class) the nodes show them as small grey pictures (and the target's
    name moves to the title). A None entry in ``source_images`` draws that node as text. At most
    ``max_sources`` sources (largest |coef|) are drawn; the rest are counted in the title."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    if source_images is not None and len(source_images) != len(sources):
        raise ValueError(f"source_images has {len(source_images)} entries for {len(sources)} sources")
    order = sorted(range(len(sources)), key=lambda k: -abs(float(sources[k][1])))
    shown = order[:max_sources]
    hidden = len(sources) - len(shown)
    with _rc():
        fig = _figure(5.6, 5.6)
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.90))
        ax.set_xlim(-1.45, 1.45)
        ax.set_ylim(-1.45, 1.45)
        ax.set_aspect("equal")
        ax.axis("off")
        k = len(shown)
        cmax = max((abs(float(sources[j][1])) for j in shown), default=1.0) or 1.0
        # first spoke straight up; for an even count turn by half a step so that none runs straight
        # down into the target's label
        step = 2 * np.pi / max(k, 1)
        angles = np.pi / 2 - step * np.arange(k) - (step / 2 if k % 2 == 0 and k > 0 else 0.0)
        r = 1.0
        with_images = source_images is not None
        for pos, j in enumerate(shown):
            name, c = sources[j][0], float(sources[j][1])
            x, y = r * np.cos(angles[pos]), r * np.sin(angles[pos])
            ax.plot([0, x], [0, y], color=_POS if c >= 0 else _NEG, lw=0.8 + 3.2 * abs(c) / cmax, alpha=0.8,
                    zorder=1, solid_capstyle="round")
            ax.text(0.52 * x, 0.52 * y, f"{c:+.3g}", ha="center", va="center", fontsize=8.5, zorder=3,
                    color=_POS if c >= 0 else _NEG,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
            if with_images and source_images[j] is not None:
                im = OffsetImage(_gray_image(source_images[j]), cmap="gray_r", zoom=1.25, interpolation="nearest")
                ax.add_artist(AnnotationBbox(im, (x, y), frameon=True, pad=0.1, zorder=4,
                                             bboxprops=dict(ec=_GREY, lw=0.6)))
                below = y <= 0.05
                ax.text(x, y - 0.2 if below else y + 0.2, _short(name, 18, 2), ha="center",
                        va="top" if below else "bottom", fontsize=7.5, zorder=5, linespacing=1.0)
            else:
                ax.text(x, y, _short(name), ha="center", va="center", fontsize=8, zorder=4,
                        bbox=dict(boxstyle="round,pad=0.3", fc="#f4f4f4", ec=_GREY, lw=0.6))
        if target_image is not None:
            im = OffsetImage(_gray_image(target_image), cmap="gray_r", zoom=1.9, interpolation="nearest")
            ax.add_artist(AnnotationBbox(im, (0, 0), frameon=True, pad=0.15, zorder=6,
                                         bboxprops=dict(ec="black", lw=1.2)))
        else:
            ax.text(0, 0, _short(target_label, 16, 3), ha="center", va="center", fontsize=10, weight="bold",
                    zorder=6, bbox=dict(boxstyle="round,pad=0.45", fc="#fff3d6", ec="black", lw=1.0))
        if not shown:
            ax.text(0, -0.6, "no source class (θ = 0)", ha="center", fontsize=9, color=_GREY)
        # with a picture in the centre the target's name goes into the title (a caption under the
        # picture would cover the lower spokes' coefficients)
        head = title or f"{target_label} ≈ Σ θ_j · source_j"
        if title and target_image is not None and str(target_label) not in title:
            head = f"{target_label} — {title}"
        if hidden:
            head += f"  (+{hidden} smaller not shown)"
        fig.suptitle(_short(head, 70, 2), fontsize=10, y=0.975)
        return _png(fig)


# ------------------------------------------------------------------------------------------------
# Fig. 3: correlation vs coefficient


def fig3_plot(df, *, title: str = "") -> bytes:
    """|E f_i f_j| / max_s |E f_i f_s| (x) against |θ_j| (y) for one target and λ (the data of
    :func:`neudep_assets.lib.analysis.theory.fig3_data`), with Conjecture 1's bar λ/λ_max as a vertical line:
    sources left of it should have θ_j = 0; those that do not are drawn in orange."""
    x = np.asarray(df["corr_ratio"], dtype=float)
    y = np.abs(np.asarray(df["coef"], dtype=float))
    lam = float(np.asarray(df["lambda_ratio"])[0]) if len(df) else float("nan")
    nz = y > 0
    bad = nz & (x < lam)
    with _rc():
        fig = _figure(5.2, 3.9)
        ax = fig.add_axes((0.13, 0.13, 0.83, 0.66))
        ax.scatter(x[~nz], y[~nz], s=9, color=_GREY, alpha=0.6, lw=0, label=f"θ_j = 0 ({int((~nz).sum())})")
        ax.scatter(x[nz & ~bad], y[nz & ~bad], s=18, color=_POS, lw=0, label=f"θ_j ≠ 0 ({int((nz & ~bad).sum())})")
        if bad.any():
            ax.scatter(x[bad], y[bad], s=26, color=_ACCENT, marker="D", lw=0,
                       label=f"θ_j ≠ 0 left of the bar ({int(bad.sum())})")
        if np.isfinite(lam) and lam <= 1.05:
            ax.axvline(lam, color="black", ls="--", lw=1.0, label=f"λ/λ_max = {lam:.3g} (Conj. 1)")
        if "thm3_screened" in df and np.asarray(df["thm3_screened"]).any():
            xs = x[np.asarray(df["thm3_screened"], dtype=bool)]
            ax.axvspan(0, float(xs.max()), color="#2e8b57", alpha=0.08, lw=0, label="screened by Thm. 3")
        ax.set_xlim(-0.02, 1.04)
        ax.set_ylim(bottom=-0.02 * max(float(y.max(initial=0.0)), 1e-12))
        ax.set_xlabel("|E[f_i f_j]| / max_s |E[f_i f_s]|")
        ax.set_ylabel("|θ_j|")
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, fontsize=7.5, frameon=False,
                  borderaxespad=0.2, handletextpad=0.3, columnspacing=1.0)
        fig.suptitle(title or "correlation vs dependency coefficient", fontsize=10, y=0.985)
        return _png(fig)


# ------------------------------------------------------------------------------------------------
# whole paths


def _lambda_axis(df):
    """(x values per lambda_index, axis label, log scale?)."""
    idx = np.sort(df["lambda_index"].unique())
    for col, label in (("lambda_rel", "λ / λ_max"), ("lambda_ratio", "λ / λ_max"), ("lambda", "λ"),
                       ("lambda_abs", "λ (median over targets)")):
        if col in df:
            xs = df.groupby("lambda_index")[col].median().reindex(idx).to_numpy(dtype=float)
            if np.all(np.isfinite(xs)) and np.all(xs > 0) and len(np.unique(xs)) == len(xs):
                return idx, xs, label, xs.max() / xs.min() > 20
    return idx, idx.astype(float), "λ index", False


def _style_lambda_axes(axes, xs, xlabel: str, logx: bool) -> None:
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    for ax in axes:
        ax.set_xlabel(xlabel)
        if logx:
            ax.set_xlim(xs.min() / 1.2, xs.max() * 1.2)  # an axis of all-NaN lines has no data limits
            ax.set_xscale("log")
            # the grid's own λ values as ticks: log minor labels (2×10⁻², 3×10⁻², …) overlap
            ax.set_xticks(sorted(set(float(x) for x in xs)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.25, lw=0.5)


def sparsity_plot(metrics_df, *, max_sources: int = 10, max_rel_err: float = 0.2) -> bytes:
    """Per λ: the share of target classes with a dependency (any source; and 1–``max_sources``
    sources with Rel Err ≤ ``max_rel_err``), the median number of sources and the median Rel Err.
    ``metrics_df`` has one row per (lambda_index, target) with n_sources and rel_err (as
    :func:`neudep_assets.lib.analysis.table1.table1_metrics` returns); a lambda_rel / lambda column, if
    present, labels the x axis."""
    idx, xs, xlabel, logx = _lambda_axis(metrics_df)
    g = metrics_df.groupby("lambda_index")
    any_dep = g["n_sources"].apply(lambda s: float((s > 0).mean())).reindex(idx).to_numpy()
    good = metrics_df.assign(_ok=(metrics_df["n_sources"] >= 1) & (metrics_df["n_sources"] <= max_sources)
                             & (metrics_df["rel_err"] <= max_rel_err))
    good = good.groupby("lambda_index")["_ok"].mean().reindex(idx).to_numpy()
    med_src = g["n_sources"].median().reindex(idx).to_numpy()
    med_err = g["rel_err"].median().reindex(idx).to_numpy()
    with _rc():
        fig = _figure(8.4, 2.8)
        axes = [fig.add_axes((0.07 + 0.33 * k, 0.19, 0.25, 0.66)) for k in range(3)]
        axes[0].plot(xs, 100 * any_dep, "o-", color=_GREY, label="≥ 1 source")
        axes[0].plot(xs, 100 * good, "o-", color=_POS, label=f"1–{max_sources} src, RelErr ≤ {max_rel_err:.0%}")
        axes[0].set_ylabel("% of target classes")
        axes[0].set_ylim(-3, 103)
        axes[0].legend(fontsize=7, frameon=False, loc="best")
        axes[0].set_title("classes with a dependency")
        axes[1].plot(xs, med_src, "o-", color=_POS)
        axes[1].set_title("median number of sources")
        axes[1].set_ylim(bottom=0)
        axes[2].plot(xs, 100 * med_err, "o-", color=_NEG)
        axes[2].set_title("median Rel Err (%)")
        axes[2].set_ylim(bottom=0)
        _style_lambda_axes(axes, xs, xlabel, logx)
        return _png(fig)


def screening_plot(screen_df) -> bytes:
    """Fig-3 statistics over a path: per λ, the share of candidate sources that Theorem 3 and
    Conjecture 1 declare independent (beside the share that really is zero in the solution), and the
    violation rate of each rule (screened sources that nonetheless have θ_j ≠ 0)."""
    idx, xs, xlabel, logx = _lambda_axis(screen_df)
    g = screen_df.groupby("lambda_index")[["n_candidates", "n_nonzero", "thm3_screened", "thm3_violations",
                                           "conj1_screened", "conj1_violations"]].sum().reindex(idx)
    cand = g["n_candidates"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = 1 - g["n_nonzero"].to_numpy() / cand
        s3 = g["thm3_screened"].to_numpy() / cand
        sc = g["conj1_screened"].to_numpy() / cand
        v3 = g["thm3_violations"].to_numpy() / g["thm3_screened"].to_numpy()
        vc = g["conj1_violations"].to_numpy() / g["conj1_screened"].to_numpy()
    with _rc():
        fig = _figure(7.6, 2.9)
        a, b = fig.add_axes((0.08, 0.18, 0.38, 0.68)), fig.add_axes((0.59, 0.18, 0.38, 0.68))
        a.plot(xs, 100 * zero, "-", color="black", lw=1.2, label="θ_j = 0 in the solution")
        a.plot(xs, 100 * sc, "o-", color=_ACCENT, label="Conj. 1 (|b_j| < λ/2)")
        a.plot(xs, 100 * s3, "s-", color="#2e8b57", label="Thm. 3 (safe rule)")
        a.set_ylabel("% of candidate sources")
        a.set_ylim(-3, 103)
        a.set_title("declared independent")
        a.legend(fontsize=7, frameon=False, loc="best")
        b.plot(xs, 100 * vc, "o-", color=_ACCENT, label="Conj. 1")
        b.plot(xs, 100 * v3, "s-", color="#2e8b57", label="Thm. 3")
        b.set_ylabel("% of screened with θ_j ≠ 0")
        b.set_title("violation rate")
        b.set_ylim(bottom=0)
        b.legend(fontsize=7, frameon=False, loc="best")
        _style_lambda_axes((a, b), xs, xlabel, logx)
        return _png(fig)


__all__: Sequence[str] = ["star_plot", "fig3_plot", "sparsity_plot", "screening_plot", "regularization_plot"]


def grouped_bars(df, *, group: str, series: str, value: str, err: str | None = None, title: str = "",
                 ylabel: str = "") -> bytes:
    """Bars of ``value`` per ``group`` (x) and ``series`` (colour), with ``err`` as error bars: the
    Table 2/4 plot (accuracy per split setting and reading, per method) and the Table 3 plot."""
    groups = list(dict.fromkeys(df[group]))
    names = list(dict.fromkeys(df[series]))
    fig = _figure(max(5.0, 0.9 * len(groups) * max(1, len(names)) / 2 + 2), 3.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(names))
    colors = [_POS, _ACCENT, _GREY, _NEG, "#2e8b57", "#8e44ad"]
    for k, name in enumerate(names):
        sub = df[df[series] == name].set_index(group).reindex(groups)
        xs = np.arange(len(groups)) + (k - (len(names) - 1) / 2) * width
        ax.bar(xs, sub[value].to_numpy(float), width, yerr=None if err is None else sub[err].to_numpy(float),
               label=str(name), color=colors[k % len(colors)], capsize=2)
    ax.set_xticks(np.arange(len(groups)), [textwrap.shorten(str(g), 24) for g in groups], fontsize=8)
    ax.set_ylabel(ylabel or value)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _pair_ends(pair: str) -> tuple[str, str]:
    a, _, b = str(pair).partition("  ~  ")
    return a, b or a


def regularization_figure(t3, *, title: str = ""):
    """Table 3 as three panels, each on its own axis: val accuracy (%), the cut pair's |coefficient|
    at λ in each direction (a → b: target a, source b; the parent's as a black mark) and OOD AUPR, per
    pair and role (control, regularized), mean ± std over seeds. ``t3`` has the columns of
    sql/queries/regularization_table3.sql. Returns the matplotlib Figure (:func:`regularization_plot`: its PNG)."""
    from matplotlib.figure import Figure

    roles = list(dict.fromkeys(t3["role"]))
    pairs = list(dict.fromkeys(t3["pair"]))
    colors = {r: c for r, c in zip(roles, [_GREY, _POS, _ACCENT, _NEG])}
    width = 0.8 / max(1, len(roles))

    def bars(ax, cats, value, err, scale=1.0):
        for k, role in enumerate(roles):
            sub = t3[t3["role"] == role].set_index("pair")
            ys = [scale * abs(float(sub.loc[p, v])) if p in sub.index else np.nan for p, v in cats]
            es = [scale * float(sub.loc[p, e]) if p in sub.index else np.nan for (p, _), e in zip(cats, err)]
            xs = np.arange(len(cats)) + (k - (len(roles) - 1) / 2) * width
            ax.bar(xs, ys, width, yerr=es, color=colors[role], capsize=2, label=str(role))
        ax.set_xticks(np.arange(len(cats)))
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.grid(axis="y", alpha=0.25, lw=0.5)

    n_dir = 2 * len(pairs)
    with _rc():
        fig = Figure(figsize=(max(8.4, 2.2 + 1.1 * (2 * len(pairs) + n_dir)), 3.6), dpi=100, layout="constrained")
        acc, coef, aupr = fig.subplots(1, 3, width_ratios=[len(pairs) + 1, n_dir + 1, len(pairs) + 1])
        bars(acc, [(p, "acc") for p in pairs], "acc", ["acc_std"] * len(pairs), scale=100.0)
        acc.set_title("val accuracy (%)")
        acc.set_xticklabels([_short(p.replace("  ~  ", " ~ "), 14, 3) for p in pairs], fontsize=7.5)
        cats = [(p, d) for p in pairs for d in ("coef_ab", "coef_ba")]
        bars(coef, cats, None, [f"{d}_std" for _, d in cats])
        parent = t3.drop_duplicates("pair").set_index("pair")["parent_coef"].abs()
        for i, (p, d) in enumerate(cats):  # the parent's coefficient is of one direction (its chosen edge)
            if d == "coef_ab" and p in parent.index:
                coef.plot([i - 0.45, i + 1.45], [parent[p]] * 2, color="black", lw=1.2,
                          label="parent (its chosen edge)" if i == 0 else None)
        labels = []
        for p, d in cats:
            a, b = _pair_ends(p)
            t, src = (a, b) if d == "coef_ab" else (b, a)
            labels.append(_short(f"{t} ← {src}", 12, 3))
        coef.set_xticklabels(labels, fontsize=7, linespacing=1.0)
        coef.set_title("pair's |coefficient| at λ (target ← source)")
        bars(aupr, [(p, "ood_aupr") for p in pairs], "ood_aupr", ["ood_aupr_std"] * len(pairs))
        aupr.set_title("OOD AUPR")
        aupr.set_ylim(0, 1.02)
        aupr.set_xticklabels([_short(p.replace("  ~  ", " ~ "), 14, 3) for p in pairs], fontsize=7.5)
        handles, names = coef.get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), frameon=False, fontsize=8)
        fig.suptitle(title or "dependency regularizer (Table 3)", fontsize=10)
        return fig


def regularization_plot(t3, *, title: str = "") -> bytes:
    """:func:`regularization_figure` as PNG bytes."""
    with _rc():
        return _png(regularization_figure(t3, title=title))


def compact_png(png: bytes, *, colors: int = 16, max_width: int = 1000) -> bytes:
    """The same picture as a small palette PNG for inline display (the Dagster UI's event log keeps
    every byte of it): at most `colors` colours picked by Pillow's octree quantizer, no dithering (flat
    plot colours and text stay crisp), at most `max_width` px wide. A plot of ≈ 40 KB becomes ≈ 5–10 KB."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS)
    im = im.quantize(colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
