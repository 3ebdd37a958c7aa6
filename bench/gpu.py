"""The GPU path measured in one call: every CUDA code path of neudep beside its CPU path (a script, not a test).

    python bench/gpu.py                    # on a CUDA machine: the whole table (≤ 8 min on one H200, see below)
    python bench/gpu.py --quick            # a smoke run on the GPU (≈ 2 min)
    python bench/gpu.py --cpu-only         # every part at tiny sizes on the CPU (tests/test_gpu_bench.py runs it)
    python bench/gpu.py --json table.json  # also save the table (and the machine) as JSON

Needs only the lib and what a bare GPU machine has (torch, torchvision, timm, numba, numpy, scipy, pandas,
pyarrow): no Dagster, no DuckDB, nothing to install (the test checks that neither is imported).

One row per part; each gives the figure on the device, the CPU figure (run here) or reference (measured
earlier, dated), their agreement, and the peak memory (GPU: torch's peak allocated in that row; RSS:
the process's peak so far):

1. logits (:func:`compute_logits`) of the default CNN (``neudep.yaml``'s ``cnn``, 32 px, 1000 classes) and of
   a 224-px EfficientNet-B0 (random weights): images/s on each device, max |difference| on the same images.
2. one training epoch (:func:`train_classifier`, the default CNN's recipe) on the device: images/s, and the
   epoch's loss beside the CPU's for the same seed and batches (on the first 2,048 images).
3. the CovLasso at the default's size (n = 1,000, d = 256, 40k samples, the 5-λ grid): the batched torch
   homotopy on the device against the numba kernel: supports, max coefficient difference, worst KKT and
   time of each, and how many targets the torch path handed back to numba.
4. ``bench/scale.py``'s analysis (its synthetic head, :func:`analyse_chunk` per target chunk then
   :func:`merge_chunks`, i.e. :func:`analyse` with ``target_chunk``) at n = 21,841, one λ, with the device:
   C, chunks (solve), merge, wall time; a sample of targets re-solved by numba on the CPU for agreement.
5. the same at n = 5,000 on the full λ grid.

Time: the run keeps to a budget (``--budget-s``, 420 s from its start, warm-up included). Parts 4 and 5 share
what parts 1-3 leave (half each), each in a child process that sizes its target chunks to its share (a first
chunk of 256 targets, then what fits at the measured rate, stopping with a quarter of the share left for the
merge and the numba check) and is killed 10 s past it. A part that runs out of time says how many targets
it solved and extrapolates the rest (no merge); ``--parts scale-21k --budget-s 560`` gives part 4 a call of
its own. Out of GPU memory in a part: the row says so, the memory is freed and the script goes on.
Exit status: 0 when every row ran and agreed (or ran out of memory or time), 1 when one failed, disagreed
or was killed, 2 on bad arguments (``--device cuda`` without CUDA).

Estimate (one H200, 16 CPU cores; from this project's 2-core measurements, nothing measured on a GPU yet):
warm-up ≤ 1.5 min (numba compiles its kernels once per machine: 72 s on the 2-core machine), parts 1-3
≈ 1 min, parts 4 and 5 the rest of the 420 s: the whole script ≤ 7.5 min (420 s + 2 × 10 s at worst).
Whether part 4 finishes is doubtful: its torch homotopy multiplies a (batch × n) direction by C at every
lockstep step, and a batch takes as many steps as its slowest target has breakpoints (763 among 440 random
targets at n = 5,000, measured with numba): ≈ 1.6e16 fp64 flops over the 21,841 targets if n = 21,841 is
alike, ≥ 4 min at an H200's fp64 peak (67 TFLOPS), before the batched Cholesky factorizations (padded to
the batch's largest active set, up to ≈ 600-700) and the CPU's share (certificates, Table-1 metrics).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import resource
import sys
import time
import traceback

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FORBIDDEN = ("dagster", "duckdb")  # a bare GPU machine has neither

# the CPU references of parts 4 and 5 (docs/scale.md "How big a model can you analyse?", bench/scale.py)
REF_21K = ("2-core CPU, 2026-12-02: C 195 s, chunks 509 s (solve 404 s), merge 65 s, wall 12 min 55 s, "
           "RSS 9.4 GB; 2.07 M nonzeros, worst KKT 1.9e-14")
REF_5K = ("2-core CPU, 2026-12-02: analysis 422 s (solve 360 s), 7 min 17 s with C, RSS 1.67 GB; "
          "3.43 M nonzeros, worst KKT 3.3e-14")

# sizes per mode: full (default), quick (--quick), tiny (--cpu-only)
SIZES = {
    "full": dict(cnn_images=20480, cnn_ref=2048, eff_images=2048, eff_ref=64, eff_batch=128,
                 train_images=10240, train_ref=2048, val=512,
                 lasso_n=1000, lasso_d=256, lasso_samples=40000,
                 s21=dict(n=21841, d=768, samples=30000, eval=5000, chunk=2048, probe=256, min_chunk=64,
                          lambdas=[0.1], check=256),
                 s5=dict(n=5000, d=768, samples=30000, eval=5000, chunk=1000, probe=256, min_chunk=64,
                         lambdas=None, check=256),
                 budget=420.0),
    "quick": dict(cnn_images=4096, cnn_ref=512, eff_images=256, eff_ref=16, eff_batch=64,
                  train_images=2048, train_ref=512, val=256,
                  lasso_n=1000, lasso_d=256, lasso_samples=40000,
                  s21=dict(n=4000, d=768, samples=10000, eval=2000, chunk=1000, probe=256, min_chunk=64,
                           lambdas=[0.1], check=128),
                  s5=dict(n=2000, d=768, samples=8000, eval=2000, chunk=500, probe=256, min_chunk=64,
                          lambdas=None, check=128),
                  budget=150.0),
    "tiny": dict(cnn_images=128, cnn_ref=128, eff_images=2, eff_ref=2, eff_batch=2,
                 train_images=128, train_ref=128, val=32,
                 lasso_n=120, lasso_d=24, lasso_samples=3000,
                 s21=dict(n=300, d=20, samples=2000, eval=400, chunk=128, probe=128, min_chunk=16,
                          lambdas=[0.1], check=40),
                 s5=dict(n=200, d=16, samples=1500, eval=300, chunk=100, probe=100, min_chunk=16,
                         lambdas=None, check=40),
                 budget=300.0),
}
PARTS = ("logits-cnn", "logits-224", "training", "covlasso", "scale-21k", "scale-5k")


# ----------------------------------------------------------------------------- measuring


def rss_peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def is_cuda(dev: str) -> bool:
    return str(dev).removeprefix("torch:").startswith("cuda")


def sync(dev: str) -> None:
    if is_cuda(dev):
        import torch

        torch.cuda.synchronize()


def reset_peak(dev: str) -> None:
    if is_cuda(dev):
        import torch

        torch.cuda.reset_peak_memory_stats()


def gpu_peak_gb(dev: str) -> float | None:
    if not is_cuda(dev):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def free_gpu() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(e).lower()


def secs(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:,.0f}"


def say(line: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')}  {line}", file=sys.stderr, flush=True)


def _load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- models


def default_cnn():
    """The default CNN exactly as the pipeline builds it (``neudep.yaml``'s first model, 1000 glyph classes,
    1 channel, 32 px, mean/std 0.5) and its training recipe."""
    from neudep_assets.lib.config import load_config
    from neudep_assets.lib.models.checkpoints import DEFAULT_MEAN, DEFAULT_STD
    from neudep_assets.lib.models.timm_models import create_model
    from neudep_assets.lib.specs import TRAIN_DEFAULTS

    cfg = load_config(os.path.join(ROOT, "neudep.yaml"))
    spec = next(m for m in cfg.models if m.name == "cnn")
    g = cfg.dataset.glyphs
    model = create_model(spec, num_classes=g.n_classes, in_chans=1, mean=DEFAULT_MEAN, std=DEFAULT_STD,
                         img_size=g.image_size)
    return model, dict(n_classes=g.n_classes, size=g.image_size, chans=1, mean=DEFAULT_MEAN, std=DEFAULT_STD,
                       train={**TRAIN_DEFAULTS, **spec.train}, arch=spec.arch)


def effnet_224():
    from neudep_assets.lib.models.timm_models import create_model
    from neudep_assets.lib.specs import ModelSpec

    model = create_model(ModelSpec(name="effnet", arch="efficientnet_b0"), num_classes=1000, in_chans=3,
                         mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), img_size=224)
    return model, dict(n_classes=1000, size=224, chans=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                       arch="efficientnet_b0")


def images(n, chans, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, chans, size, size), dtype=np.uint8)


# ----------------------------------------------------------------------------- parts 1 and 2


def part_logits(which, dev, S):
    import copy

    from neudep_assets.lib.models.logits import compute_logits

    if which == "cnn":
        model, m = default_cnn()
        n_dev, n_ref, batch = S["cnn_images"], S["cnn_ref"], 512
    else:
        model, m = effnet_224()
        n_dev, n_ref, batch = S["eff_images"], S["eff_ref"], S["eff_batch"]
    x = images(max(n_dev, n_ref), m["chans"], m["size"])
    cpu_model = copy.deepcopy(model)
    kw = dict(mean=m["mean"], std=m["std"], batch_size=batch)
    compute_logits(model, x[:2], device=dev, **kw)  # warm-up: CUDA context, cuDNN's algorithm choice
    reset_peak(dev)
    sync(dev)
    t = time.perf_counter()
    out = compute_logits(model, x[:n_dev], device=dev, **kw)
    t_dev = time.perf_counter() - t
    t = time.perf_counter()
    ref = compute_logits(cpu_model, x[:n_ref], device="cpu", **kw)
    t_cpu = time.perf_counter() - t
    k = min(n_dev, n_ref)
    diff = float(np.abs(out[:k] - ref[:k]).max())
    scale = float(np.abs(ref[:k]).max()) or 1.0
    top1 = float((out[:k].argmax(1) == ref[:k].argmax(1)).mean())
    rel = diff / scale
    return dict(
        size=f"{m['arch']} {m['size']} px, {m['n_classes']} classes, batch {batch}",
        device=f"{n_dev / t_dev:,.0f} img/s ({n_dev} img, {t_dev:.2f} s)",
        cpu=f"{n_ref / t_cpu:,.0f} img/s ({n_ref} img, {t_cpu:.2f} s)",
        agreement=f"‖Δ‖∞ {diff:.2e} (rel {rel:.1e}), same top-1 {top1:.1%} of {k}",
        ok=bool(rel <= 1e-2), gpu_peak=gpu_peak_gb(dev),
        figures=dict(dev_img_s=n_dev / t_dev, cpu_img_s=n_ref / t_cpu, max_abs_diff=diff, rel_diff=rel, top1=top1),
    )


def _train_once(dev, x, y, xv, yv, m):
    from neudep_assets.lib.models.training import train_classifier

    model, _ = default_cnn()
    t = {**m["train"], "epochs": 1, "fresh_samples": False}
    res = train_classifier(model, train_images=x, train_labels=y, val_images=xv, val_labels=yv, mean=m["mean"],
                           std=m["std"], device=dev, log=None, **t)
    h = res["history"][0]
    return res["train_samples_per_epoch"] / h["train_seconds"], h["loss"], h["train_seconds"]


def part_training(dev, S):
    _, m = default_cnn()
    n_classes = m["n_classes"]
    N, n_ref = S["train_images"], S["train_ref"]
    x = images(max(N, n_ref), m["chans"], m["size"], seed=1)
    y = np.random.default_rng(2).integers(0, n_classes, len(x))
    xv, yv = x[:S["val"]], y[:S["val"]]
    reset_peak(dev)
    ips, loss_dev, secs = _train_once(dev, x[:N], y[:N], xv, yv, m)
    if n_ref != N:  # the same seed and batches on both devices, on the first n_ref images
        _, loss_dev, _ = _train_once(dev, x[:n_ref], y[:n_ref], xv, yv, m)
    ips_cpu, loss_cpu, secs_cpu = _train_once("cpu", x[:n_ref], y[:n_ref], xv, yv, m)
    d = abs(loss_dev - loss_cpu)
    b = m["train"]["batch_size"]
    return dict(
        size=f"{m['arch']} {m['size']} px, 1 epoch, batch {b}, lr {m['train']['lr']:g}",
        device=f"{ips:,.0f} img/s ({N} img, {secs:.1f} s); loss {loss_dev:.5f} on the first {n_ref}",
        cpu=f"{ips_cpu:,.0f} img/s ({n_ref} img, {secs_cpu:.1f} s); loss {loss_cpu:.5f}",
        agreement=f"Δ loss {d:.1e} (rel {d / abs(loss_cpu):.1e}), same seed and batches",
        ok=bool(d <= 1e-2 * abs(loss_cpu)), gpu_peak=gpu_peak_gb(dev),
        figures=dict(dev_img_s=ips, cpu_img_s=ips_cpu, loss_dev=loss_dev, loss_cpu=loss_cpu, loss_diff=d),
    )


# ----------------------------------------------------------------------------- parts 3 to 5


def count_fallbacks():
    """Wrap the torch kernel to count the targets it solved and those it handed to numba (instrumentation
    only: the solver imports the kernel at call time, so the wrapper is what it calls)."""
    from neudep_assets.lib.covlasso import torch_kernel

    inner = torch_kernel.solve_many_torch
    counts = {"targets": 0, "to_numba": 0}

    def wrapped(*a, **k):
        out = inner(*a, **k)
        counts["targets"] += int(out[3].size)
        counts["to_numba"] += int(out[3].sum())
        return out

    torch_kernel.solve_many_torch = wrapped
    return counts, lambda: setattr(torch_kernel, "solve_many_torch", inner)


def compare(a, b, pos_a=None):
    """Agreement of two solves of the same targets (``pos_a``: the positions of b's targets in a)."""
    L, T, _ = b.sparse.shape
    pos_a = np.arange(T) if pos_a is None else np.asarray(pos_a)
    same, worst, scale = 0, 0.0, 0.0
    for l in range(L):
        for k in range(T):
            ia, va = a.sparse.row(l, int(pos_a[k]))
            ib, vb = b.sparse.row(l, k)
            if np.array_equal(ia, ib):
                same += 1
                d = float(np.abs(va - vb).max(initial=0.0))
            else:
                full_a, full_b = dict(zip(ia.tolist(), va.tolist())), dict(zip(ib.tolist(), vb.tolist()))
                d = max(abs(full_a.get(j, 0.0) - full_b.get(j, 0.0)) for j in set(full_a) | set(full_b))
            worst = max(worst, d)
            scale = max(scale, float(np.abs(vb).max(initial=0.0)))
    kkt_a = float(a.kkt[:, pos_a].max())
    kkt_b = float(b.kkt.max())
    cert = bool(np.all(a.kkt[:, pos_a] <= a.tol) and np.all(b.kkt <= b.tol))
    ok = cert and same >= 0.99 * L * T and worst <= 1e-6 * max(scale, 1.0)
    text = (f"same support {same}/{L * T}, ‖Δcoef‖∞ {worst:.1e}, worst KKT {kkt_a:.1e} (dev) / {kkt_b:.1e} "
            f"(numba){'' if cert else ', NOT all certified'}")
    return text, ok, dict(same_support=same, solutions=L * T, max_coef_diff=worst, kkt_dev=kkt_a, kkt_numba=kkt_b)


def head_data(n, d, samples, eval_samples, seed=0):
    """bench/scale.py's synthetic head: (C, eval logits, eval labels, seconds for the fit logits and C)."""
    from neudep_assets.lib.analysis import second_moment

    sc = _load_bench("scale")
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((d, n), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    bias = (0.3 * rng.standard_normal(n)).astype(np.float32)
    t = time.perf_counter()
    F, _ = sc.synthetic_logits(rng, W, bias, samples)
    C = second_moment(F)
    del F
    t_c = time.perf_counter() - t
    E, ye = (sc.synthetic_logits(rng, W, bias, eval_samples) if eval_samples else (None, None))
    return C, E, ye, t_c


def warm_kernels(dev):
    """Load (or, on a fresh machine, compile) the numba kernels and start the device, outside any timing."""
    from neudep_assets.lib.analysis import analyse

    t = time.perf_counter()
    rng = np.random.default_rng(0)
    F = rng.standard_normal((200, 30)) @ rng.standard_normal((30, 40))
    C = F.T @ F / 200
    analyse(C, [0.5, 0.1], eval_source=F[:50].astype(np.float32), eval_labels=rng.integers(0, 40, 50))
    if dev != "cpu":
        from neudep_assets.lib.covlasso import solve_path

        solve_path(C, [0.1], device=dev)
    return time.perf_counter() - t


def part_covlasso(dev, S):
    from neudep_assets.lib.config import DEFAULT_LAMBDAS
    from neudep_assets.lib.covlasso import solve_path

    n, d, N = S["lasso_n"], S["lasso_d"], S["lasso_samples"]
    C, _, _, _ = head_data(n, d, N, 0)
    lams = list(DEFAULT_LAMBDAS)
    counts, undo = count_fallbacks()
    try:
        reset_peak(dev)
        gpu = solve_path(C, lams, device=dev)
    finally:
        undo()
    cpu = solve_path(C, lams)
    text, ok, fig = compare(gpu, cpu)
    return dict(
        size=f"n = {n}, d = {d}, {N} samples, {len(lams)} λ, all targets",
        device=f"torch homotopy {gpu.seconds:.2f} s ({counts['to_numba']} of {counts['targets']} targets "
               f"handed to numba)",
        cpu=f"numba {cpu.seconds:.2f} s ({os.cpu_count()} cores)",
        agreement=text, ok=ok, gpu_peak=gpu_peak_gb(dev),
        figures=dict(dev_s=gpu.seconds, numba_s=cpu.seconds, to_numba=counts["to_numba"], **fig),
    )


def part_scale(dev, P, deadline, reference):
    """bench/scale.py's analysis with the device: target chunks while they fit before ``deadline``
    (perf_counter; the first chunk a probe of ``P["probe"]`` targets, the later ones sized to the time
    left at the measured rate), then the merge when every target is solved."""
    from neudep_assets.lib.analysis.dependencies import analyse_chunk, merge_chunks
    from neudep_assets.lib.config import DEFAULT_LAMBDAS
    from neudep_assets.lib.covlasso import concat_paths, solve_path

    lams = P["lambdas"] or list(DEFAULT_LAMBDAS)
    n = P["n"]
    t_row = time.perf_counter()
    C, E, ye, t_c = head_data(n, P["d"], P["samples"], P["eval"])
    say(f"n = {n}: fit logits + C in {t_c:.1f} s")
    counts, undo = count_fallbacks()
    chunks, t_chunk, t_solve, a = [], 0.0, 0.0, 0
    reset_peak(dev)
    try:
        while a < n:
            size = min(P["chunk"], P["probe"]) if not chunks else P["chunk"]
            if chunks:  # what fits in the time left at the rate measured so far
                fits = int(0.9 * (deadline - time.perf_counter()) * a / t_chunk)
                if fits < min(P["min_chunk"], n - a):
                    break
                size = min(size, fits)
            b = min(n, a + size)
            t = time.perf_counter()
            chunks.append(analyse_chunk(C, lams, np.arange(a, b), eval_source=E, eval_labels=ye, device=dev))
            t_chunk += time.perf_counter() - t
            t_solve += chunks[-1].path.seconds
            say(f"n = {n}: targets {a}–{b - 1} solved and analysed ({t_chunk:.1f} s so far)")
            a = b
    finally:
        undo()
    gpu_peak = gpu_peak_gb(dev)
    solved = sum(c.path.targets.size for c in chunks)
    path = concat_paths([c.path for c in chunks])
    t_merge = None
    if solved == n:
        t = time.perf_counter()
        res = merge_chunks(C, chunks)
        t_merge = time.perf_counter() - t
        rank, method = res.rank, res.spectral.method
    # agreement: a sample of the solved targets again, by numba on the CPU
    rng = np.random.default_rng(3)
    sample = np.sort(rng.choice(solved, min(P["check"], solved), replace=False))
    cpu = solve_path(C, lams, targets=sample)
    text, ok, fig = compare(path, cpu, pos_a=sample)
    wall = time.perf_counter() - t_row
    certified = float(np.mean(path.kkt <= path.tol))
    if solved == n:
        dev_text = (f"C {secs(t_c)} s, chunks {secs(t_chunk)} s (solve {secs(t_solve)} s), merge {secs(t_merge)} s "
                    f"(rank {rank}, {method}), wall {secs(wall)} s; {path.sparse.nnz:,} nonzeros, certified "
                    f"{certified:.4f}, worst KKT {path.kkt.max():.1e}")
    else:
        est = t_chunk * n / max(solved, 1)
        dev_text = (f"PARTIAL (time budget): {solved} of {n} targets in {secs(t_chunk)} s (solve {secs(t_solve)} s) → "
                    f"≈ {secs(est)} s for all; C {secs(t_c)} s, no merge, wall {secs(wall)} s; certified {certified:.4f}")
    cpu_text = (f"numba on {sample.size} of those targets: {secs(cpu.seconds)} s → ≈ {secs(cpu.seconds * n / sample.size)} s "
                f"for all ({os.cpu_count()} cores)")
    if reference:
        cpu_text += f"; reference {reference}"
    return dict(
        size=f"n = {n}, d = {P['d']}, {P['samples']} fit + {P['eval']} eval, {len(lams)} λ, chunks of {P['chunk']}",
        device=dev_text + f" ({counts['to_numba']} of {counts['targets']} targets handed to numba)",
        cpu=cpu_text, agreement=text, ok=ok, gpu_peak=gpu_peak, partial=solved < n,
        figures=dict(c_s=t_c, chunks_s=t_chunk, solve_s=t_solve, merge_s=t_merge, wall_s=wall, solved=solved,
                     nnz=int(path.sparse.nnz), kkt_max=float(path.kkt.max()), certified=certified,
                     numba_sample_s=cpu.seconds, to_numba=counts["to_numba"], **fig),
    )


# ----------------------------------------------------------------------------- the table


def run_row(name, fn, dev):
    say(f"{name} …")
    t = time.perf_counter()
    row, oom = None, None
    try:
        row = fn(dev)
        row["status"] = "partial" if row.pop("partial", False) else ("ok" if row["ok"] else "DISAGREES")
    except Exception as e:  # noqa: BLE001 - one part failing must not stop the others
        if is_oom(e):
            oom = f"out of {'GPU ' if is_cuda(dev) else ''}memory: {str(e).splitlines()[0][:160]}"
        else:
            traceback.print_exc()
            row = dict(size="", device=f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                       cpu="", agreement="", ok=False, gpu_peak=gpu_peak_gb(dev), figures={}, status="FAILED")
    if oom is not None:  # outside the except block: the traceback (and the tensors its frames hold) is gone
        free_gpu()
        row = dict(size="", device=oom, cpu="", agreement="", ok=None, gpu_peak=gpu_peak_gb(dev), figures={},
                   status="OOM")
    row.update(part=name, seconds=time.perf_counter() - t, rss_peak=rss_peak_gb())
    say(f"{name}: {row['status']} in {row['seconds']:.1f} s")
    free_gpu()
    return row


def print_table(rows, header):
    print(header)
    print()
    print("| part | size | device | CPU (here) / reference | agreement | status | GPU peak | RSS peak | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gp = "–" if r["gpu_peak"] is None else f"{r['gpu_peak']:.2f} GB"
        print(f"| {r['part']} | {r['size']} | {r['device']} | {r['cpu']} | {r['agreement']} | {r['status']} | {gp} | "
              f"{r['rss_peak']:.2f} GB | {r['seconds']:.0f} |")


def machine(dev):
    import numba
    import torch

    info = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                host_cpus=os.cpu_count(), numba_threads=numba.get_num_threads(), torch=torch.__version__,
                python=platform.python_version(), device=dev)
    if is_cuda(dev):
        p = torch.cuda.get_device_properties(torch.device(dev.removeprefix("torch:")))
        info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn_tf32=bool(getattr(torch.backends.cudnn, "allow_tf32", False)),
                    matmul_precision=torch.get_float32_matmul_precision())
    return info


def run_child(name, part, argv, seconds):
    """Part 4 or 5 in a child process with a hard time limit (``seconds`` plus a little): the part sizes its
    chunks to ``seconds``, and a kernel that runs far longer than measured is killed, not waited for."""
    import subprocess
    import tempfile
    import threading

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neudep-gpu-") as tmp:
        out = os.path.join(tmp, "row.json")
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--child", part, f"{seconds:.1f}", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        last = [""]

        def pump():  # the child's progress lines, passed on; the last one kept for a timeout's row
            for line in proc.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()
                last[0] = line.strip() or last[0]

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        limit = seconds + 10
        try:
            proc.wait(timeout=limit)
            killed = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed = True
        th.join(5)
        row = None
        if os.path.exists(out):
            with open(out) as f:
                row = json.load(f)
    if row is None:
        what = f"TIMEOUT: killed after {limit:.0f} s" if killed else f"FAILED: child exited {proc.returncode}"
        row = dict(part=name, size="", device=f"{what}; last progress: {last[0][:200]}", cpu="", agreement="",
                   ok=False, gpu_peak=None, figures={}, status="TIMEOUT" if killed else "FAILED",
                   rss_peak=float("nan"), seconds=time.perf_counter() - t)
    return row


def setup_device(a, ap):
    """(device for models, device for the CovLasso) from the arguments; a clear error without CUDA."""
    if a.cpu_only:
        if a.device not in (None, "cpu"):
            ap.error(f"--cpu-only runs on the CPU; --device {a.device} contradicts it")
        return "cpu", "torch:cpu"  # the torch homotopy on the CPU (its test device)
    from neudep_assets.lib.models.logits import pick_device

    try:
        dev = pick_device(a.device or "cuda")
    except ValueError as e:
        print(f"bench/gpu.py: {e}; run with --cpu-only for the CPU smoke run", file=sys.stderr)
        sys.exit(2)
    if not dev.startswith("cuda"):
        ap.error(f"--device {dev}: the script measures the CUDA path (cuda, cuda:N); --cpu-only for the CPU")
    return dev, dev


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="the device measured (default cuda; --cpu-only: cpu)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: smaller sizes, budget 150 s")
    ap.add_argument("--cpu-only", action="store_true", help="every part at tiny sizes on the CPU (the test)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds for the whole run; parts 4 and 5 share what parts 1-3 leave (420; quick 150)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the table here")
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)  # PART SECONDS ROW_JSON
    a = ap.parse_args(argv)
    mode = "tiny" if a.cpu_only else "quick" if a.quick else "full"
    S = SIZES[mode]
    t0 = time.perf_counter()
    budget = a.budget_s if a.budget_s is not None else S["budget"]
    if a.json and not os.path.isdir(os.path.dirname(os.path.abspath(a.json))):
        ap.error(f"--json {a.json}: its folder does not exist")
    dev, lasso_dev = setup_device(a, ap)
    scale = {"scale-21k": (f"4 scale n={S['s21']['n']}", S["s21"], REF_21K),
             "scale-5k": (f"5 scale n={S['s5']['n']} grid", S["s5"], REF_5K)}
    if a.child:  # one of parts 4 and 5, in a child of the main run: its row as JSON
        part, seconds, out = a.child[0], float(a.child[1]), a.child[2]
        warm_kernels(lasso_dev)
        deadline = t0 + 0.75 * seconds  # the rest for the merge and the numba check
        name, P, ref = scale[part]
        row = run_row(name, lambda d: part_scale(d, P, deadline, ref if mode == "full" else None), lasso_dev)
        with open(out, "w") as f:
            json.dump(row, f, default=float)
        sys.stderr.flush()
        os._exit(0)  # the row is written: skip the interpreter's teardown of torch and numba (seconds)

    info = machine(lasso_dev)
    info.update(mode=mode, budget_s=budget)
    say(f"{mode} run on {info.get('gpu', 'the CPU')} ({os.cpu_count()} CPUs); numba/device warm-up …")
    info["warmup_s"] = round(warm_kernels(lasso_dev), 1)
    rows = []
    if "logits-cnn" in a.parts:
        rows.append(run_row("1 logits CNN", lambda d: part_logits("cnn", d, S), dev))
    if "logits-224" in a.parts:
        rows.append(run_row("1 logits 224 px", lambda d: part_logits("eff", d, S), dev))
    if "training" in a.parts:
        rows.append(run_row("2 training", lambda d: part_training(d, S), dev))
    if "covlasso" in a.parts:
        rows.append(run_row("3 CovLasso", lambda d: part_covlasso(d, S), lasso_dev))
    # parts 4 and 5 share what is left of the budget (half each when both run), each in a child
    # process that sizes its chunks to its share and is killed if it overruns it
    child_argv = ["--cpu-only"] if a.cpu_only else (["--quick"] if a.quick else []) + ["--device", dev]
    todo = [p for p in ("scale-21k", "scale-5k") if p in a.parts]
    for k, part in enumerate(todo):
        left = max(t0 + budget - time.perf_counter(), 30.0)
        seconds = 0.5 * left if len(todo) - k == 2 else 0.95 * left
        say(f"{scale[part][0]} in a child process, {seconds:.0f} s allotted …")
        rows.append(run_child(scale[part][0], part, child_argv, seconds))
        say(f"{scale[part][0]}: {rows[-1]['status']} in {rows[-1]['seconds']:.1f} s")
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN))
    info["forbidden_imported"] = loaded
    header = (f"bench/gpu.py ({mode}), {info['date']}: {info.get('gpu', 'CPU only')}"
              f"{', CUDA ' + str(info['cuda']) if 'cuda' in info else ''}, torch {info['torch']}, "
              f"{info['host_cpus']} CPUs (numba {info['numba_threads']} threads); wall {info['wall_s']:.0f} s "
              f"(warm-up {info['warmup_s']} s); dagster/duckdb imported: {', '.join(loaded) or 'neither'}")
    print_table(rows, header)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1, default=float)
    bad = [r["part"] for r in rows if r["status"] in ("FAILED", "DISAGREES", "TIMEOUT")]  # OOM, partial: measured
    return 1 if bad or loaded else 0


if __name__ == "__main__":
    sys.exit(main())
