"""A dependency analysis at ImageNet-21k scale, on synthetic logits (a script, not a test).

    python bench/scale.py                              # n = 21,841 classes, one λ (0.1), chunks of 2,048
    python bench/scale.py --n 5000 --full-grid         # n = 5,000 with the default λ grid (CI-sized)
    python bench/scale.py --n 8000 --gauge centered    # the centered gauge (working set from 6,000 classes)

Data: logits of a random linear head on d = 768 nonnegative features that carry class structure
(``features @ W + bias``), over --samples fit samples (C = E[f fᵀ]) and --eval-samples evaluation
samples (Table-1 metrics), generated in chunks. The analysis goes through
:func:`neudep_assets.lib.analysis.analyse` with ``target_chunk`` — the code path of the
``dependencies`` asset: every chunk solved and certified, then the Table-1 metrics (lasso and
relaxed refit), redundancy, Eq. 5 and screening from the sparse coefficients and one
eigendecomposition of C (the low-rank one when C's rank is below n/8, as here above 4,096 classes).

Printed: a progress line per target chunk and per later stage of the analysis (elapsed time, current
and peak resident memory), the wall time of each stage, the peak resident memory of the process
(ru_maxrss) after each, the number of nonzero coefficients, the worst relative KKT violation and the
share certified.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from neudep_assets.lib.analysis import analyse, second_moment  # noqa: E402
from neudep_assets.lib.analysis.offsets import apply_gauge  # noqa: E402
from neudep_assets.lib.config import DEFAULT_LAMBDAS  # noqa: E402


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def rss_gb() -> float:
    """Current resident memory (Linux /proc), GB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def progress(line: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')}  {line:<58} RSS {rss_gb():6.2f} GB  peak {peak_gb():6.2f} GB", flush=True)


def synthetic_logits(rng, W, bias, N, chunk=4096):
    """(N, n) float32 logits and labels: ReLU features plus a class-dependent shift, through the head."""
    d, n = W.shape
    out = np.empty((N, n), dtype=np.float32)
    labels = rng.integers(0, n, N)
    for s in range(0, N, chunk):
        y = labels[s:s + chunk]
        H = np.maximum(rng.standard_normal((y.size, d), dtype=np.float32), 0) + 2.0 * W[:, y].T
        np.matmul(H, W, out=out[s:s + chunk])
        out[s:s + chunk] += bias
    return out, labels


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=21841, help="classes (21,841 = ImageNet-21k)")
    ap.add_argument("--d", type=int, default=768, help="feature width of the random head")
    ap.add_argument("--samples", type=int, default=30000, help="fit samples (C)")
    ap.add_argument("--eval-samples", type=int, default=5000, help="evaluation samples (Table-1 metrics)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.1], help="relative λ grid")
    ap.add_argument("--full-grid", action="store_true", help=f"the default grid {list(DEFAULT_LAMBDAS)}")
    ap.add_argument("--chunk", type=int, default=2048, help="target_chunk")
    ap.add_argument("--device", default=None, help="None (numba) or cuda")
    ap.add_argument("--gauge", default="raw", choices=["raw", "centered"], help="the logit gauge (docs/maths.md)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    lams = list(DEFAULT_LAMBDAS) if a.full_grid else a.lambdas
    rng = np.random.default_rng(a.seed)
    W = (rng.standard_normal((a.d, a.n), dtype=np.float32) / np.sqrt(a.d)).astype(np.float32)
    bias = (0.3 * rng.standard_normal(a.n)).astype(np.float32)
    print(f"n = {a.n}, d = {a.d}, {a.samples} fit + {a.eval_samples} eval samples, λ_rel = {lams}, "
          f"target_chunk = {a.chunk}, device = {a.device or 'cpu (numba)'}, gauge = {a.gauge}", flush=True)

    t0 = time.perf_counter()
    F, _ = synthetic_logits(rng, W, bias, a.samples)
    C = second_moment(apply_gauge(F, a.gauge))
    del F
    t_c = time.perf_counter() - t0
    print(f"fit logits + C = E[f fᵀ]      {t_c:8.1f} s   peak RSS {peak_gb():6.2f} GB", flush=True)
    E, ye = synthetic_logits(rng, W, bias, a.eval_samples)
    E = apply_gauge(E, a.gauge)
    t0 = time.perf_counter()
    res = analyse(C, lams, eval_source=E, eval_labels=ye, target_chunk=a.chunk, device=a.device, log=progress,
                  gauge=a.gauge)
    t_a = time.perf_counter() - t0
    p = res.path
    print(f"solve (all chunks, certified) {p.seconds:8.1f} s", flush=True)
    print(f"analysis total                {t_a:8.1f} s   peak RSS {peak_gb():6.2f} GB   "
          f"(analysis / solve = {t_a / p.seconds:.2f}×)", flush=True)
    pt = res.per_target
    print(f"nonzeros {p.sparse.nnz:,} ({p.sparse.nnz / p.kkt.size:.1f} per solution); worst relative KKT "
          f"{p.kkt.max():.1e}; certified {np.mean(p.kkt <= p.tol):.4f}; rank of C {res.rank} ({res.spectral.method} eigendecomposition)")
    for li, lam in enumerate(lams):
        d = pt[pt.lambda_index == li]
        print(f"  λ_rel {lam:<5g} median sources {d.n_sources.median():5.0f}  median Rel Err {d.rel_err.median():.3f}"
              f" (refit {d.rel_err_refit.median():.3f})")


if __name__ == "__main__":
    main()
