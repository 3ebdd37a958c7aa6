"""Sparse results end to end: chunked solves and analyses equal unchunked ones row for row, the relaxed
refit against least squares on the samples, and bad input (target_chunk, λ grid, device) refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.analysis import analyse, second_moment
from neudep_assets.lib.analysis.table1 import table1_metrics
from neudep_assets.lib.config import ConfigError, DependencyConfig
from neudep_assets.lib.covlasso import SparseCoef, solve_path


def _logits(rng, N, n, d):
    """Logits of a random low-rank head on ReLU features (rank ≤ d + 1), with labels."""
    y = rng.integers(0, n, N)
    W = rng.normal(size=(d, n)) / np.sqrt(d)
    H = np.maximum(rng.normal(size=(N, d)), 0.0) + 2.0 * W[:, y].T
    return H @ W + 0.3 * rng.normal(size=n), y


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    F, _ = _logits(rng, 1500, 24, 8)
    E, ye = _logits(np.random.default_rng(1), 600, 24, 8)
    return second_moment(F), F, E, ye


def test_sparse_coef_round_trip_and_concat():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(3, 5, 7)) * (rng.random((3, 5, 7)) < 0.3)
    sc = SparseCoef.from_dense(dense)
    assert sc.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(sc.dense(), dense)
    np.testing.assert_array_equal(sc.n_active(), np.count_nonzero(dense, axis=2))
    joined = SparseCoef.concat([SparseCoef.from_dense(dense[:, :2]), SparseCoef.from_dense(dense[:, 2:])])
    np.testing.assert_array_equal(joined.dense(), dense)
    l, k, j, v = sc.edges()
    np.testing.assert_array_equal(np.stack(np.nonzero(dense)), np.stack([l, k, j]))  # λ, target, source order
    np.testing.assert_array_equal(v, dense[l, k, j])


def test_internal_blocks_give_the_same_path(case):
    C = case[0]
    whole = solve_path(C, [0.5, 0.1, 0.02])
    blocks = solve_path(C, [0.5, 0.1, 0.02], block_bytes=8 * 3 * 24 * 5)  # blocks of 5 targets
    np.testing.assert_array_equal(whole.coef, blocks.coef)
    np.testing.assert_array_equal(whole.kkt, blocks.kkt)
    assert whole.certified and isinstance(whole.sparse, SparseCoef)


@pytest.mark.parametrize("chunk", [1, 5, 24])
def test_chunked_analysis_has_exactly_the_rows_of_an_unchunked_one(case, chunk):
    C, _, E, ye = case
    lams = [0.5, 0.2, 0.1, 0.02]
    ref = analyse(C, lams, eval_source=E, eval_labels=ye)
    lines = []
    got = analyse(C, lams, eval_source=E, eval_labels=ye, target_chunk=chunk, log=lines.append)
    n = C.shape[0]
    assert sum("solved" in line for line in lines) == -(-n // chunk)  # one progress line per chunk
    assert lines[-1].startswith("screening") and len(lines) == -(-n // chunk) + 2
    pd.testing.assert_frame_equal(got.per_target, ref.per_target)
    pd.testing.assert_frame_equal(got.edges, ref.edges)
    pd.testing.assert_frame_equal(got.per_class, ref.per_class)


def test_chunked_between_analysis_equals_unchunked():
    rng = np.random.default_rng(2)
    F, y = _logits(rng, 1200, 15, 6)
    G = F @ rng.normal(size=(15, 15)) * 0.3 + rng.normal(size=(1200, 15))
    C, X, s = second_moment(F), second_moment(F, G), (G ** 2).mean(0)
    kw = dict(cross=X, target_second_moment=s, eval_source=F[:400], eval_target=G[:400], eval_labels=y[:400])
    ref = analyse(C, [0.3, 0.05], **kw)
    got = analyse(C, [0.3, 0.05], target_chunk=4, **kw)
    pd.testing.assert_frame_equal(got.per_target, ref.per_target)
    pd.testing.assert_frame_equal(got.edges, ref.edges)


def test_refit_is_least_squares_on_the_support(case):
    """The refit columns are the Table-1 metrics of the least-squares fit of the target on the lasso's
    support, computed here independently by LAPACK on the fit samples (not from the moments)."""
    C, F, E, ye = case
    lams = [0.5, 0.1]
    res = analyse(C, lams, eval_source=E, eval_labels=ye)
    L, T, n = res.path.sparse.shape
    ls = np.zeros((L, T, n))
    for li in range(L):
        for k in range(T):
            S, _ = res.path.sparse.row(li, k)
            if S.size:
                ls[li, k, S] = np.linalg.lstsq(F[:, S], F[:, k], rcond=None)[0]
    want = table1_metrics(E, ye, ls, np.arange(T))
    pt = res.per_target
    for col in ("abs_err", "rel_err", "acc", "pos_acc"):
        np.testing.assert_allclose(pt[f"{col}_refit"], want[col], rtol=1e-6, atol=1e-9, err_msg=col)
    for li in range(L):
        resid = F - F @ ls[li].T  # column k: target k minus its refit reconstruction
        np.testing.assert_allclose(pt.loc[pt.lambda_index == li, "fit_err_refit"], (resid ** 2).mean(0),
                                   rtol=1e-6, atol=1e-9 * C.diagonal().max())
    # least squares on the support never fits the fit split worse than the shrunk lasso
    assert (pt.fit_err_refit <= pt.fit_err * (1 + 1e-9) + 1e-12).all()
    np.testing.assert_allclose(pt.unexplained_share, pt.fit_err / C.diagonal()[pt.target_class])


@pytest.mark.parametrize("kw, culprit", [
    ({"target_chunk": 0}, "target_chunk"), ({"target_chunk": -3}, "target_chunk"),
    ({"target_chunk": 2.5}, "target_chunk"), ({"chunk_steps": 0}, "chunk_steps"), ({"chunk_steps": True}, "chunk_steps"),
    ({"chunk_steps": 2.0}, "chunk_steps"), ({"lambdas": (0.1, 0.5, 0.1)}, "duplicates"),
    ({"lambdas": (0.1, 1.5)}, r"\(0, 1\]"), ({"lambdas": (0.0, 0.1)}, r"\(0, 1\]"),
])
def test_bad_dependency_config_names_the_key(kw, culprit):
    with pytest.raises(ConfigError, match=culprit):
        DependencyConfig(**kw).validate("neudep.yaml")
    DependencyConfig(lambdas=(2.0, 0.0), lambda_mode="absolute").validate("ok")  # absolute λ: any ≥ 0


def test_analyse_refuses_a_bad_chunk_before_solving(case):
    C, _, E, ye = case
    with pytest.raises(ValueError, match="target_chunk"):
        analyse(C, [0.1], eval_source=E, eval_labels=ye, target_chunk=0)


def test_a_device_that_does_not_exist_is_an_error():
    import torch

    from neudep_assets.defs.dependency_assets import _solver_device
    from neudep_assets.defs.resources import Neudep

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="cuda"):
        _solver_device(Neudep(config_path="x", data_root="y", device="cuda"))
    assert _solver_device(Neudep(config_path="x", data_root="y", device="cpu")) is None


def test_logits_batch_size_fits_input_and_memory():
    from neudep_assets.lib.models.logits import auto_batch_size
    from neudep_assets.lib.specs import ModelSpec

    assert auto_batch_size(32, 32, memory=64 << 30) == 512  # the glyph default: as before
    b224 = auto_batch_size(224, 224, memory=64 << 30)
    assert 16 <= b224 <= 64  # 512 would take ≈ 10 GB at 224 px
    assert auto_batch_size(224, 224, memory=1 << 30) < b224  # less memory at hand, smaller batches
    assert ModelSpec.from_dict({"name": "m", "arch": "resnet18", "logits_batch_size": 32}).logits_batch_size == 32
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="logits_batch_size"):
            ModelSpec.from_dict({"name": "m", "arch": "resnet18", "logits_batch_size": bad})


def test_launchpad_target_chunk_override_and_identity():
    from neudep_assets.defs.dependency_assets import DependenciesConfig, _effective, identity

    project = DependencyConfig(target_chunk=500)
    assert _effective(project, DependenciesConfig()).target_chunk == 500  # unset keeps the project value
    assert _effective(project, DependenciesConfig(target_chunk=64)).target_chunk == 64
    with pytest.raises(ConfigError, match="target_chunk"):
        _effective(project, DependenciesConfig(target_chunk=-1))
    with pytest.raises(ConfigError, match="lambdas"):
        _effective(project, DependenciesConfig(lambdas=[0.1, 0.1]))
    # chunking does not change the rows, so it does not change the analysis's identity (its run key)
    assert identity(_effective(project, DependenciesConfig(target_chunk=64))) == identity(DependencyConfig())
    assert identity(DependencyConfig(chunk_steps=4)) == identity(DependencyConfig())


def test_chunks_round_trip_through_npz_and_merge_to_the_unsplit_rows(case, tmp_path):
    """What the chunk steps hand each other: an npz without pickles that merges into exactly the rows
    of one unsplit analysis; chunks missing, repeated or out of order are refused."""
    from neudep_assets.lib.analysis.dependencies import (analyse_chunk, chunk_from_arrays, chunk_to_arrays,
                                                         merge_chunks, step_ranges, target_ranges)
    from neudep_assets.lib.files import load_arrays, save_arrays

    C, _, E, ye = case
    lams = [0.5, 0.1, 0.02]
    ref = analyse(C, lams, eval_source=E, eval_labels=ye)
    ranges = target_ranges(C.shape[0], 7)
    assert ranges[0] == (0, 7) and ranges[-1][1] == C.shape[0] and target_ranges(5, None) == [(0, 5)]
    assert step_ranges(12, 3) == [(0, 4), (4, 8), (8, 12)] and step_ranges(2, 3) == [(0, 0), (0, 1), (1, 2)]
    with pytest.raises(ValueError, match="chunk_steps"):
        step_ranges(12, 0)
    chunks = []
    for a, b in ranges:
        path = save_arrays(tmp_path / f"{a}.npz", **chunk_to_arrays(
            analyse_chunk(C, lams, np.arange(a, b), eval_source=E, eval_labels=ye)))
        chunks.append(chunk_from_arrays(load_arrays(path)))
    got = merge_chunks(C, chunks)
    pd.testing.assert_frame_equal(got.per_target, ref.per_target, check_exact=True)
    pd.testing.assert_frame_equal(got.edges, ref.edges, check_exact=True)
    pd.testing.assert_frame_equal(got.per_class, ref.per_class, check_exact=True)
    np.testing.assert_array_equal(got.path.coef, ref.path.coef)
    for bad in (chunks[:-1], chunks[::-1], chunks + chunks[-1:]):
        with pytest.raises(ValueError, match="targets must be 0"):
            merge_chunks(C, bad)
