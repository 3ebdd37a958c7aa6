"""The centered gauge's cost beside the raw one, and median rel_err0 in both gauges (issue 19).

Synthetic logits shaped like a classifier's (ReLU features × a random head + a per-class bias + a common
per-sample offset), n classes, one analysis per gauge (solve + Table 1 + refit + redundancy, Eq. 5,
screening), timed after a warm-up that loads numba's cache. The row "raw on G" runs the raw solver on the
centred logits' moment G itself (the leaky problem of the same size, whose paths are as long as the
centered gauge's): the centered solve beside it is the cost of the per-target correction alone; beside
"raw" it also carries the centered problems' own path lengths (breakpoints per target).

    python bench/gauge_cost.py --n 1000 --d 256 --samples 6000 --lambdas 0.1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from neudep_assets.lib.analysis import analyse, second_moment
from neudep_assets.lib.analysis.offsets import apply_gauge
from neudep_assets.lib.covlasso import solve_path


def logits(n: int, d: int, N: int, offset: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    H = np.maximum(rng.normal(size=(N, d)), 0.0)
    return (H @ rng.normal(size=(d, n)) / np.sqrt(d) + rng.normal(size=n) + offset * rng.normal(size=(N, 1))
            ).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--samples", type=int, default=6000)
    ap.add_argument("--offset", type=float, default=1.0, help="std of the common per-sample offset")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.1])
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    F = logits(a.n, a.d, a.samples, a.offset)
    fit, ev = F[: a.samples // 2], F[a.samples // 2:]
    small = apply_gauge(fit[:200, :40], "centered")
    analyse(second_moment(small), [0.1], eval_source=small, eval_labels=small.argmax(1), gauge="centered")  # warm-up
    analyse(second_moment(small), [0.1], eval_source=small, eval_labels=small.argmax(1))
    for name, moments, gauge in (("raw", "raw", "raw"), ("centered", "centered", "centered"),
                                 ("raw on G", "centered", "raw")):
        f, e = apply_gauge(fit, moments), apply_gauge(ev, moments)
        C = second_moment(f)
        solve, full = [], []
        for _ in range(a.repeat):  # alternating solve and analysis, best of each
            t0 = time.perf_counter()
            path = solve_path(C, a.lambdas, gauge=gauge)
            solve.append(time.perf_counter() - t0)
            if name == "raw on G":
                continue
            t0 = time.perf_counter()
            res = analyse(C, a.lambdas, eval_source=e, eval_labels=ev.argmax(1), gauge=gauge)
            full.append(time.perf_counter() - t0)
        bps = path.breakpoints.mean()
        line = (f"{name:9s} n={a.n} d={a.d} N={a.samples} λ_rel={a.lambdas}: solve {min(solve):.2f} s "
                f"({bps:.1f} breakpoints per target, {1e6 * min(solve) / (bps * a.n):.1f} µs each)")
        if full:
            at = res.per_target[res.per_target["lambda_index"] == 0]
            line += (f", analysis {min(full):.2f} s; median rel_err0 {res.per_class['rel_err0'].median():.3g}; at "
                     f"λ_rel {a.lambdas[0]}: median Rel Err {at['rel_err'].median():.3f}, median sources "
                     f"{at['n_sources'].median():.0f}, max KKT {res.path.kkt.max():.1e}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
