"""Logit offsets and gauges (lib/analysis/offsets.py): closed forms, planted structure, bad input."""

import numpy as np
import pandas as pd
import pytest

from neudep_assets.lib.analysis import analyse, second_moment
from neudep_assets.lib.analysis.comparisons import compare
from neudep_assets.lib.analysis.offsets import (apply_gauge, check_gauge, gauge_moment, logit_stats,
                                                offset_direction_share, offset_direction_share_of, offset_warning,
                                                other_gauge)
from neudep_assets.lib.config import ConfigError, DependencyConfig, load_config
from neudep_assets.lib.specs import validate_train_config


def test_logit_stats_match_the_closed_form():
    # f(x) = a(x)·1 + s(x)·(1, −1, 1, −1): per-sample mean a, within-sample std |s|, top logit a + |s|
    rng = np.random.default_rng(0)
    a, s = rng.normal(-5, 2, 500), rng.normal(0, 3, 500)
    f = (a[:, None] + s[:, None] * np.array([1.0, -1.0, 1.0, -1.0])).astype(np.float32)
    st = logit_stats(f, chunk=64)
    assert st["n_samples"] == 500 and st["n_classes"] == 4
    assert st["mean_logit_mean"] == pytest.approx(a.mean(), abs=1e-5)
    assert st["mean_logit_std"] == pytest.approx(a.std(), abs=1e-5)
    assert st["within_sample_std"] == pytest.approx(np.sqrt((s ** 2).mean()), rel=1e-5)
    assert st["offset_share"] == pytest.approx((a ** 2).mean() / ((a ** 2).mean() + (s ** 2).mean()), rel=1e-5)
    assert st["top_logit_mean"] == pytest.approx((a + np.abs(s)).mean(), rel=1e-5)
    assert st["top_minus_mean"] == pytest.approx(np.abs(s).mean(), rel=1e-5)
    # no offset, all offset
    assert logit_stats(f - f.mean(1, keepdims=True))["offset_share"] == pytest.approx(0, abs=1e-10)
    assert logit_stats(np.tile(a[:, None], (1, 7)))["offset_share"] == pytest.approx(1)


def test_offset_warning_only_above_threshold_and_says_what_it_means():
    assert offset_warning("cnn", "val", 0.2) is None
    w = offset_warning("cnn", "val", 0.84)
    assert "84%" in w and "cnn/val" in w and "offset" in w and "centered" in w


def test_centered_gauge_moment_is_the_moment_of_centered_logits():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 6)) + rng.normal(3, 1, size=(300, 1))
    g = rng.normal(size=(300, 6)) - 2
    for gauge in ("raw", "centered"):
        fg, gg = apply_gauge(f, gauge), apply_gauge(g, gauge)
        np.testing.assert_allclose(gauge_moment(second_moment(f), gauge), second_moment(fg), atol=1e-10)
        np.testing.assert_allclose(gauge_moment(second_moment(f, g), gauge), second_moment(fg, gg), atol=1e-10)
    fc = apply_gauge(f, "centered")
    np.testing.assert_allclose(fc.mean(1), 0, atol=1e-12)
    assert np.array_equal(fc.argmax(1), f.argmax(1))  # no prediction can see the gauge
    assert apply_gauge(f, "raw") is f and other_gauge("raw") == "centered" and other_gauge("centered") == "raw"


def test_unknown_gauge_is_refused_naming_the_allowed_values(tmp_path):
    for bad in ("centred", "", "RAW"):
        with pytest.raises(ValueError, match="raw, centered"):
            check_gauge(bad)
        with pytest.raises(ValueError, match="raw, centered"):
            apply_gauge(np.zeros((2, 3)), bad)
    with pytest.raises(ConfigError, match=r"logit_gauge: must be one of raw, centered \(got 'centred'\)"):
        DependencyConfig(logit_gauge="centred").validate("x.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {kind: glyphs, glyphs: {n_classes: 12}}\nmodels: [{name: m, arch: resnet10t}]\n"
                   "dependencies: {logit_gauge: centred}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*logit_gauge.*raw, centered.*'centred'"):
        load_config(cfg)
    cfg.write_text(cfg.read_text().replace("centred", "centered"))
    assert load_config(cfg).dependencies.logit_gauge == "centered"
    assert DependencyConfig().logit_gauge == "raw"  # the paper's reading stays the default


def test_launchpad_gauge_override_is_validated():
    from neudep_assets.defs.dependency_assets import DependenciesConfig, _crosscheck, _effective

    eff = _effective(DependencyConfig(), DependenciesConfig(logit_gauge="centered"))
    assert eff.logit_gauge == "centered"
    other = _crosscheck(eff)
    assert other.logit_gauge == "raw" and other.lambdas == (0.1,) and not other.gauge_crosscheck
    with pytest.raises(ConfigError, match="raw, centered"):
        _effective(DependencyConfig(), DependenciesConfig(logit_gauge="mean"))


def test_offset_direction_share_closed_form_against_samples():
    """The share of E[r²] that the offset component (1ᵀt)·m carries, the cross term in E[r²] included, against
    the samples; with an offset correlated with the classes the cross term matters (the old formula, which left
    it out, is off by more than 0.05 here)."""
    rng = np.random.default_rng(2)
    for corr in (0.0, 1.5):
        z = rng.normal(size=(4000, 5))
        f = z + rng.normal(-4, 1, size=(4000, 1)) + corr * z[:, :1]  # corr: the offset moves with class 0
        coef = rng.normal(size=(3, 5))
        coef[0] = [1.0, 0.2, 0.1, 0.0, 0.0]
        m = f.mean(1)
        r = f @ coef.T
        off = (coef.sum(1)[None] * m[:, None]) ** 2
        expected = off.mean(0) / (r ** 2).mean(0)
        got = offset_direction_share(second_moment(f), coef)
        np.testing.assert_allclose(got, expected, rtol=1e-9)
        disc = (((f - m[:, None]) @ coef.T) ** 2).mean(0)
        without_cross = off.mean(0) / (off.mean(0) + disc)
        assert (np.abs(without_cross - got).max() > 0.05) == (corr > 0)
    assert np.isnan(offset_direction_share(second_moment(f), np.zeros((1, 5))))[0]
    # the centered gauge has no offset direction
    np.testing.assert_allclose(offset_direction_share(gauge_moment(second_moment(f), "centered"), coef), 0, atol=1e-12)


def test_offset_direction_share_tells_a_planted_offset_dependency_from_a_discriminative_one():
    # 40 classes: every logit carries a large common offset m(x); logit 0 is also 2·logit 1 − logit 2
    rng = np.random.default_rng(3)
    n_s, n = 4000, 40
    z = rng.normal(size=(n_s, n))
    z -= z.mean(1, keepdims=True)
    z[:, 0] = 2 * z[:, 1] - z[:, 2]
    m = rng.normal(-10, 1, size=(n_s, 1))
    f = z + m
    res = analyse(second_moment(f), [0.05], eval_source=f, eval_labels=f.argmax(1))
    share = offset_direction_share(second_moment(f), res.path.coef)[0]
    t7 = res.path.coef[0, 7]
    # class 7 has nothing but the offset in common with the others: a coefficient sum ≈ 1 that
    # reproduces m(x), almost all of it along the all-ones direction
    assert t7.sum() == pytest.approx(1, abs=0.2) and share[7] > 0.9
    # in the centered gauge (sources re-centred without the target) the same class has no dependency
    Cc = gauge_moment(second_moment(f), "centered")
    fc = apply_gauge(f, "centered")
    res_c = analyse(Cc, [0.05], eval_source=fc, eval_labels=f.argmax(1), gauge="centered")
    row7 = res_c.per_target.set_index("target_class").loc[7]
    assert row7["rel_err"] > 0.8 and res_c.per_class.loc[7, "rel_err0"] > 0.9
    # the planted discriminative dependency survives centering, with no offset direction
    row0 = res_c.per_target.set_index("target_class").loc[0]
    assert row0["rel_err"] < 0.2 and set(np.flatnonzero(res_c.path.coef[0, 0])) >= {1, 2}
    assert offset_direction_share(Cc, res_c.path.coef)[0, 0] == pytest.approx(0, abs=1e-12)


def _dense_share(C, coef):
    """The dense O(n²)-per-solution formula: (1ᵀt)² 1ᵀC1/n² over tᵀCt per row."""
    n = C.shape[0]
    flat = coef.reshape(-1, n)
    off = flat.sum(1) ** 2 * max(C.sum() / n ** 2, 0.0)
    tot = np.einsum("ij,jk,ik->i", flat, C, flat)
    return np.where(tot > 0, off / np.where(tot > 0, tot, 1), np.nan).reshape(coef.shape[:-1])


def test_offset_direction_share_from_sparse_coefficients_equals_the_dense_computation():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(3000, 30)) @ rng.normal(size=(30, 30)) + rng.normal(-1, 1, size=(3000, 1))
    C = second_moment(f)
    res = analyse(C, [1.0, 0.1, 0.02], eval_source=f[:500], eval_labels=f[:500].argmax(1))
    dense = res.path.coef  # (3, 30, 30); at λ_rel = 1 every t = 0 (share NaN)
    want = _dense_share(C, dense)
    assert np.isnan(want[0]).all() and not np.isnan(want[1:]).any() and np.ptp(want[1:]) > 0.1
    np.testing.assert_allclose(offset_direction_share(C, res.path.sparse), want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(offset_direction_share(C, res.path), want, rtol=1e-9, atol=1e-12)
    pt = res.per_target
    np.testing.assert_allclose(
        offset_direction_share_of(C, res.path, res.path.targets, pt["lambda_index"], pt["target_class"]),
        want[pt["lambda_index"], pt["target_class"]], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="sources"):
        offset_direction_share(C[:5, :5], res.path.sparse)


def test_comparisons_never_mix_gauges():
    # one checkpoint analysed within in both gauges, one between analysis in raw only
    runs = pd.DataFrame([
        dict(dependency_run_id="w-raw", lambda_index=0, lambda_rel=0.1, kind="within", model="a", source_model="a",
             checkpoint_sha256="A", source_checkpoint_sha256="A", logit_gauge="raw"),
        dict(dependency_run_id="w-cen", lambda_index=0, lambda_rel=0.1, kind="within", model="a", source_model="a",
             checkpoint_sha256="A", source_checkpoint_sha256="A", logit_gauge="centered"),
        dict(dependency_run_id="b-raw", lambda_index=0, lambda_rel=0.1, kind="between", model="a", source_model="b",
             checkpoint_sha256="A", source_checkpoint_sha256="B", logit_gauge="raw"),
    ])
    edges = pd.DataFrame([("w-raw", 0, 1, 0, 1.0), ("w-cen", 0, 2, 0, 1.0), ("b-raw", 0, 1, 0, 1.0)],
                         columns=["dependency_run_id", "lambda_index", "target_class", "source_class", "coef"])
    out = compare(runs, edges, 4)
    vs = out[out["metric"] == "jaccard_vs_within_target"]
    assert len(vs) == 1 and vs["value"].iloc[0] == 1.0 and vs["logit_gauge"].iloc[0] == "raw"
    assert not (out["kind"] == "checkpoint_stability").any()  # raw and centered are not two versions


def test_mean_logit_penalty_is_a_validated_train_setting():
    assert validate_train_config({"mean_logit_penalty": 0.05}) == {"mean_logit_penalty": 0.05}
    with pytest.raises(ValueError, match="mean_logit_penalty"):
        validate_train_config({"mean_logit_penalty": -1.0})


def test_mean_logit_penalty_removes_the_offset_and_keeps_predictions_learnable():
    import torch

    from neudep_assets.lib.models import train_classifier

    # a linear classifier on separable points; plain cross-entropy with Adam drifts the mean logit
    rng = np.random.default_rng(4)
    n_cls, per = 20, 10
    centers = rng.normal(size=(n_cls, 16)).astype(np.float32) * 3
    y = np.repeat(np.arange(n_cls), per)
    x = np.repeat((centers[y] + rng.normal(size=(len(y), 16)).astype(np.float32))[:, None, :, None], 3, axis=1)
    offsets = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, n_cls))
        res = train_classifier(model, train_images=x, train_labels=y, val_images=x, val_labels=y, epochs=30,
                               lr=0.01, batch_size=50, weight_decay=0.0, seed=0, mean=(0.0,), std=(1.0,), log=None,
                               label_smoothing=0.0, mean_logit_penalty=alpha)
        with torch.no_grad():
            offsets[alpha] = logit_stats(model(torch.from_numpy(x)).numpy())["offset_share"]
        assert res["val_acc"] > 0.9
    assert offsets[0.0] > 0.3 and offsets[1.0] < 0.05, offsets


def test_centering_in_blocks_is_the_float64_difference_rounded_once():
    rng = np.random.default_rng(3)
    f = (rng.normal(size=(5000, 37)) * 4 + rng.normal(size=(5000, 1)) * 30).astype(np.float32)
    want = (f.astype(np.float64) - f.astype(np.float64).mean(axis=1, keepdims=True)).astype(np.float32)
    got = apply_gauge(f, "centered")
    assert got.dtype == np.float32 and got.shape == f.shape
    np.testing.assert_array_equal(got, want)
    assert apply_gauge(f, "raw") is f
