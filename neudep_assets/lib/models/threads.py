"""A fixed number of torch intra-op threads around a computation on the CPU.

torch splits a float32 reduction (a convolution's weight gradient, a matrix product, a batch-norm
sum) into one partial sum per thread, so the last bits of its result depend on the thread count: the
same training in a one-thread Dask worker and in a two-thread CLI process gives other checkpoint bytes
(and other logits from the same checkpoint, ≈ 2e-7 relative). With the count fixed, the same config,
data and seed give the same bytes in any process on the same kind of CPU.
"""
from __future__ import annotations

import contextlib

#: intra-op threads for training (``train.threads`` overrides it per model) and for logits
DEFAULT_THREADS = 1


def check_threads(threads, where: str = "threads") -> int:
    """``threads`` as a positive int; ``ValueError`` naming ``where`` otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{where} must be a positive integer, got {threads!r}")
    return threads


@contextlib.contextmanager
def fixed_threads(threads: int = DEFAULT_THREADS):
    """torch's intra-op thread count (OpenMP, MKL, oneDNN) set to ``threads`` in this thread, and
    restored on exit."""
    import torch

    check_threads(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
