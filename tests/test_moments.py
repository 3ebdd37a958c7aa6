"""Second moments against the closed form, and the alignment / finiteness guards."""

import numpy as np
import pytest

from neudep_assets.lib.analysis.moments import (LogitsError, check_aligned, check_finite, psd_report, second_moment,
                                       spectrum_summary)


def test_second_and_cross_moment_match_definition():
    rng = np.random.default_rng(0)
    f, g = rng.normal(size=(1000, 7)).astype(np.float32), rng.normal(size=(1000, 5))
    assert np.allclose(second_moment(f, chunk=97), f.astype(np.float64).T @ f / 1000, rtol=1e-12)
    assert np.allclose(second_moment(f, g, chunk=33), f.astype(np.float64).T @ g / 1000, rtol=1e-12)
    C = second_moment(f)
    assert np.array_equal(C, C.T) and C.dtype == np.float64
    # output columns in blocks that do not divide the classes
    for block in (1, 3):
        Cb = second_moment(f, chunk=97, block=block)
        assert np.array_equal(Cb, Cb.T) and np.allclose(Cb, f.astype(np.float64).T @ f / 1000, rtol=1e-12)
        assert np.allclose(second_moment(f, g, chunk=33, block=block), f.astype(np.float64).T @ g / 1000, rtol=1e-12)


def test_rank_of_planted_low_rank_logits():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 12))
    assert spectrum_summary(second_moment(f))["rank"] == 4


def test_guards_name_the_culprit():
    bad = np.ones((3, 4))
    bad[2, 1] = np.nan
    with pytest.raises(LogitsError, match="model X.*sample 2, class 1"):
        check_finite(bad, "model X")
    with pytest.raises(LogitsError, match="cnn and vit"):
        check_aligned(np.array(["a", "b"]), np.array(["a", "c"]), "cnn", "vit")
    with pytest.raises(LogitsError):
        second_moment(np.ones((3, 2)), np.ones((4, 2)))


def test_psd_report_flags_asymmetric_and_indefinite_matrices():
    C = second_moment(np.random.default_rng(2).normal(size=(50, 6)))
    ok = psd_report(C)
    assert ok["relative_asymmetry"] == 0 and ok["relative_min_eigenvalue"] >= -1e-14
    bad = C.copy()
    bad[0, 1] += 0.1
    assert psd_report(bad)["relative_asymmetry"] > 1e-3
    assert psd_report(C - 2 * np.eye(6) * np.abs(C).max())["relative_min_eigenvalue"] < -0.5


def test_second_moment_is_built_in_place():
    """Peak memory: the (n, n) result plus about one chunk, not the 4 × n² of sum-then-symmetrise."""
    import tracemalloc

    rng = np.random.default_rng(0)
    f = rng.normal(size=(3000, 700))
    n2 = 700 * 700 * 8
    tracemalloc.start()
    C = second_moment(f, chunk=200)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * n2, f"peak {peak / n2:.2f} × the result"
    assert np.array_equal(C, C.T)
    np.testing.assert_allclose(C, f.T @ f / 3000, rtol=1e-12, atol=1e-12)


def test_second_moment_has_the_same_bits_whatever_the_thread_count():
    """A Dask worker (one BLAS thread) and the CLI (two) must store the same C: a multi-threaded gemm splits
    its sums by the thread count (at this size the earlier blocked gemm gave other bits on 1 and 2 threads)."""
    import hashlib

    from threadpoolctl import threadpool_limits

    f = np.random.default_rng(0).normal(size=(4000, 300)).astype(np.float32)
    digests = set()
    for blas in (1, 2):
        for workers in (1, 2):
            with threadpool_limits(blas, user_api="blas"):
                C = second_moment(f, workers=workers)
            digests.add(hashlib.sha256(C.tobytes()).hexdigest())
    a = f.astype(np.float64)
    np.testing.assert_allclose(C, a.T @ a / len(a), rtol=1e-12, atol=1e-12)
    assert len(digests) == 1


def test_the_moments_spectrum_has_the_same_bits_whatever_the_blas_thread_count():
    """LAPACK's eigvalsh gave another min_eig on 1 and 2 BLAS threads here (-1.64e-12 vs -1.38e-12): the
    moments rows (min_eig, max_eig, rank) and the PSD report must not depend on where they ran."""
    from threadpoolctl import threadpool_limits

    from neudep_assets.lib.analysis.moments import psd_report, spectrum_summary

    rng = np.random.default_rng(0)
    C = second_moment((rng.normal(size=(20000, 257)) @ rng.normal(size=(257, 1000))).astype(np.float32))
    seen = []
    for t in (1, 2):
        with threadpool_limits(t, user_api="blas"):
            seen.append((spectrum_summary(C), psd_report(C)))
    assert seen[0] == seen[1] and seen[0][0]["rank"] == 257
