"""Both gauges on a data root's current logits: docs/results.md's table "Both gauges" (a script, not a test).

    python bench/default_gauges.py                  # data/ after `make demo`: CNN and ViT, within and between
    python bench/default_gauges.py --data /other/root --models cnn vit --lambdas 0.1 0.02

For each model its current checkpoint's stored logits (fit split → C, eval split → Table 1, the config's
splits), analysed through the public API (`find_dependencies` / `between_dependencies`: the assets' code
path) in the raw and the centered gauge, each timed. Printed per analysis and gauge: the share of classes
with a dependency (1–10 sources and Rel Err ≤ 20%) at each λ, the median sources and Rel Err, the median
Pos Acc loss of those, the median rel_err0, the seconds (best of --repeat, raw and centered alternating,
after a small warm-up that loads numba's cache), and the centered / raw time ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from neudep_assets import between_dependencies, find_dependencies, open_store  # noqa: E402
from neudep_assets.lib.files import load_arrays  # noqa: E402


def current_logits(store, model: str, split: str) -> dict:
    """The stored logits (and labels) of `model`'s current checkpoint on `split`."""
    rows = store.sql("SELECT l.path FROM logit_sets l JOIN checkpoints_current c USING (model, checkpoint_sha256) "
                     "WHERE l.model = $model AND l.split = $split", model=model, split=split)
    if rows.empty:
        raise SystemExit(f"no stored {split} logits of the current checkpoint of {model!r}: run `make demo` first")
    return load_arrays(rows["path"].iloc[0])


def row(name: str, gauge: str, res, lambdas, seconds: float) -> str:
    m, d = res.metrics, res.diagnostics
    parts = []
    for lam in lambdas:
        at = m[np.isclose(m["lambda_rel"], lam)]
        dep = at[(at["n_sources"] >= 1) & (at["n_sources"] <= 10) & (at["rel_err"] <= 0.2)]
        loss = (dep["orig_pos_acc"] - dep["pos_acc"]).median() * 100 if len(dep) else float("nan")
        parts.append(f"{len(dep) / len(at):6.1%} with a dependency, median {at['n_sources'].median():3.0f} sources, "
                     f"Rel Err {at['rel_err'].median():6.1%}, Pos Acc loss of those {loss:5.1f} pts")
    return (f"{name:<16} {gauge:<8} " + " | ".join(f"λ_rel {lam}: {p}" for lam, p in zip(lambdas, parts))
            + f" | median rel_err0 {d['rel_err0'].median():.3g} | {seconds:6.1f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("NEUDEP_DATA", "data"))
    ap.add_argument("--models", nargs=2, default=["cnn", "vit"])
    ap.add_argument("--fit-split", default="train")
    ap.add_argument("--eval-split", default="val")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.1, 0.02])
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    store = open_store(a.data)
    fit = {m: current_logits(store, m, a.fit_split) for m in a.models}
    ev = {m: current_logits(store, m, a.eval_split) for m in a.models}
    runs = [(m, m) for m in a.models] + [tuple(a.models), tuple(reversed(a.models))]
    small = fit[a.models[0]]["logits"][:500, :40]
    for gauge in ("raw", "centered"):  # warm-up: numba's cache
        find_dependencies(small, lambdas=a.lambdas, gauge=gauge, device="cpu")
        between_dependencies(small, small, lambdas=a.lambdas, gauge=gauge, device="cpu")
    for src, tgt in runs:
        name = src if src == tgt else f"{src} → {tgt}"
        secs, out = {"raw": np.inf, "centered": np.inf}, {}
        for gauge in ("raw", "centered") * a.repeat:
            t0 = time.perf_counter()
            if src == tgt:
                res = find_dependencies(fit[src]["logits"], eval_logits=ev[src]["logits"],
                                        eval_labels=ev[src]["labels"], lambdas=a.lambdas, gauge=gauge, device="cpu")
            else:
                res = between_dependencies(fit[src]["logits"], fit[tgt]["logits"], source_eval=ev[src]["logits"],
                                           target_eval=ev[tgt]["logits"], eval_labels=ev[tgt]["labels"],
                                           lambdas=a.lambdas, gauge=gauge, device="cpu")
            secs[gauge] = min(secs[gauge], time.perf_counter() - t0)
            out[gauge] = res
        for gauge in ("raw", "centered"):
            print(row(name, gauge, out[gauge], a.lambdas, secs[gauge]), flush=True)
        print(f"{name:<16} centered / raw time: {secs['centered'] / secs['raw']:.2f}×", flush=True)


if __name__ == "__main__":
    main()
