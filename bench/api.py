"""The notebook path against the asset path on the same logits (a script, not a test).

    python bench/api.py                       # 1,000 classes, 20,000 fit and 5,000 eval samples, 5 λ
    python bench/api.py --classes 300 --repeats 1

Notebook path: ``find_dependencies(fit, eval_logits=…, eval_labels=…)`` then ``.save(store)``.
Asset path, on the same float32 logits: what the ``moments`` asset does (``second_moment``, its npz
artifact; the eval logits as the ``logits`` asset's npz) and then the ``dependencies`` asset's own
``_within`` (load, then lib/analysis/problem.py's ``within_problem`` and ``solve`` as the notebook path,
certificate, commit), with no Dagster run around it. Both commit into a store of their own. The two are
the same code path, so the ratio should sit within 10% of 1; each path runs --repeats times,
alternating, after a small warm-up (numba's cache), and the best time of each is compared, wall and CPU (the process's CPU time over all threads: steadier than
the wall time on a machine shared with other jobs). Printed: each time, the ratios notebook / asset, and
whether the two stores hold the same dependency rows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from neudep_assets import find_dependencies  # noqa: E402
from neudep_assets.lib.analysis.moments import second_moment  # noqa: E402
from neudep_assets.lib.config import DEFAULT_LAMBDAS, DependencyConfig  # noqa: E402
from neudep_assets.lib.store import ResultStore, save_arrays  # noqa: E402


def logits(n_classes: int, n_samples: int, seed: int, d: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Classifier-like logits: a random linear head on d nonnegative features with class structure, and
    labels (the arg-max, 20% of them replaced at random)."""
    rng = np.random.default_rng(seed)
    means = np.abs(rng.normal(size=(n_classes, d)))
    y = rng.integers(0, n_classes, n_samples)
    feats = np.maximum(means[y] + rng.normal(size=(n_samples, d)), 0)
    head = np.random.default_rng(99).normal(size=(d, n_classes)) / np.sqrt(d)
    f = (feats @ head).astype(np.float32)
    labels = np.where(rng.random(n_samples) < 0.8, f.argmax(1), rng.integers(0, n_classes, n_samples))
    return f, labels.astype(np.int64)


def notebook(F, E, lab, names, root: Path) -> str:
    deps = find_dependencies(F, eval_logits=E, eval_labels=lab, lambdas=DEFAULT_LAMBDAS, class_names=names,
                             device="cpu")
    return deps.save(root, model="m", dataset_id="d", checkpoint_sha256="ab" * 32, run_id="bench")


def asset(F, E, lab, names, root: Path) -> str:
    from neudep_assets.defs.dependency_assets import _within

    store = ResultStore(root)
    save_arrays(store.artifact("moments", "m1"), C=second_moment(F))
    save_arrays(store.artifact("logits", "e1"), logits=E, labels=lab)
    ctx = SimpleNamespace(log=SimpleNamespace(info=lambda *_: None), run=SimpleNamespace(run_id="bench"))
    key, check = _within(ctx, store, DependencyConfig(gauge_crosscheck=False),
                         SimpleNamespace(class_names=names, dataset_id="d"),
                         {"model": "m", "checkpoint_sha256": "ab" * 32},
                         {"moments_id": "m1", "path": str(store.artifact("moments", "m1"))},
                         {"logit_set_id": "e1", "path": str(store.artifact("logits", "e1"))},
                         pictures=False, device=None)
    assert check.passed
    return key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--fit-samples", type=int, default=20000)
    ap.add_argument("--eval-samples", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import neudep_assets.defs.dependency_assets  # noqa: F401 (imports dagster once, outside the timings)

    F, _ = logits(args.classes, args.fit_samples, 0)
    E, lab = logits(args.classes, args.eval_samples, 1)
    names = [f"class {i}" for i in range(args.classes)]
    with tempfile.TemporaryDirectory(prefix="neudep-bench-api-") as tmp:
        small = (F[:2000, :50], E[:500, :50], np.where(lab[:500] < 50, lab[:500], -1), names[:50])
        notebook(*small, Path(tmp) / "warm-n")  # numba's compiled kernels loaded (or compiled) once
        asset(*small, Path(tmp) / "warm-a")
        times: dict[str, list[float]] = {"notebook": [], "asset": []}
        cpu: dict[str, list[float]] = {"notebook": [], "asset": []}
        keys = {}
        for r in range(args.repeats):
            for name, fn in (("notebook", notebook), ("asset", asset)):
                t0, c0 = time.perf_counter(), time.process_time()
                keys[name] = fn(F, E, lab, names, Path(tmp) / f"{name}-{r}")
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                print(f"{name:8s} run {r + 1}: {times[name][-1]:.2f} s wall, {cpu[name][-1]:.2f} s CPU", flush=True)
        a = ResultStore(Path(tmp) / "notebook-0").read("dependencies", keys["notebook"])
        b = ResultStore(Path(tmp) / "asset-0").read("dependencies", keys["asset"])
        same = a[["lambda_index", "target_class", "source_class", "coef"]].equals(
            b[["lambda_index", "target_class", "source_class", "coef"]])
    best, best_cpu = ({k: min(v) for k, v in d.items()} for d in (times, cpu))
    print(f"{datetime.date.today()}: {args.classes} classes, {args.fit_samples} fit / {args.eval_samples} eval "
          f"samples, {len(DEFAULT_LAMBDAS)} λ, {len(a)} edges; best of {args.repeats}: notebook "
          f"{best['notebook']:.2f} s, asset {best['asset']:.2f} s wall (ratio notebook/asset "
          f"{best['notebook'] / best['asset']:.3f}); CPU {best_cpu['notebook']:.2f} s vs {best_cpu['asset']:.2f} s "
          f"(ratio {best_cpu['notebook'] / best_cpu['asset']:.3f}); same dependency rows: {same}")


if __name__ == "__main__":
    main()
