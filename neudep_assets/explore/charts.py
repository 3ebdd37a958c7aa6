"""The explorer's small charts, drawn server-side as PNG (matplotlib, Agg)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

_BLUE, _RED, _GREY = "#1f5fa8", "#c0392b", "#7f8c8d"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _fig(w: float = 5.2, h: float = 3.0, cols: int = 1):
    """A Figure without pyplot (no global state: charts are drawn in the server's worker threads)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    axes = fig.subplots(1, cols)
    return fig, axes


def share_chart(share: pd.DataFrame, lambdas: tuple[float, ...]) -> bytes:
    """Share of targets with a dependency and median Rel Err along the λ grid."""
    fig, ax = _fig()
    lam = [lambdas[i] for i in share["lambda_index"]]
    ax.plot(lam, 100 * share["share"], "o-", color=_BLUE, label="with a dependency (≤ 10 sources, Rel Err ≤ 20%)")
    ax.plot(lam, 100 * share["median_rel_err"], "s--", color=_RED, label="median Rel Err (lasso)")
    if share["median_rel_err_refit"].notna().any():
        ax.plot(lam, 100 * share["median_rel_err_refit"], "^:", color=_GREY, label="median Rel Err (refit)")
    ax.set_xscale("log")
    ax.set_xticks(lam, [f"{x:g}" for x in lam])
    ax.minorticks_off()
    ax.set_xlabel("λ / λ_max")
    ax.set_ylabel("% of targets / %")
    ax.invert_xaxis()
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def distribution_chart(per_target: pd.DataFrame, lambda_rel: float) -> bytes:
    """Histograms of the number of sources and of Rel Err over the targets at one λ."""
    fig, (a, b) = _fig(7.2, 2.8, cols=2)
    n = per_target["n_sources"].to_numpy()
    a.hist(n, bins=np.arange(0, max(int(n.max(initial=0)), 1) + 2) - 0.5, color=_BLUE)
    a.set_xlabel("sources per target")
    a.set_ylabel("targets")
    r = 100 * per_target["rel_err"].dropna().to_numpy()
    b.hist(r, bins=30, color=_RED)
    b.set_xlabel("Rel Err (%)")
    fig.suptitle(f"λ / λ_max = {lambda_rel:g}", fontsize=9)
    return _png(fig)


def path_chart(knots: pd.DataFrame, names: dict[int, str], lambda_rel: float | None) -> bytes:
    """Coefficients of a target's exact lasso path (linear between knots) against λ / λ_max."""
    fig, ax = _fig(5.6, 3.2)
    lam = knots.groupby("knot")["lambda_rel"].first().sort_index()
    coefs = knots.dropna(subset=["source_class"]).pivot_table(index="knot", columns="source_class", values="coef")
    coefs = coefs.reindex(lam.index).fillna(0.0)
    top = coefs.abs().max().sort_values(ascending=False).index[:8]
    for s in coefs.columns:
        c = coefs[s]
        ax.plot(lam.to_numpy(), c.to_numpy(), lw=1.4 if s in top else 0.6, alpha=1 if s in top else 0.4,
                label=names.get(int(s), str(int(s))) if s in top else None)
    if lambda_rel is not None:
        ax.axvline(lambda_rel, color=_GREY, ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("λ / λ_max (exact path)")
    ax.set_ylabel("coefficient")
    ax.grid(alpha=0.3)
    if len(top):
        ax.legend(fontsize=6.5, loc="upper left", ncol=2)
    return _png(fig)
