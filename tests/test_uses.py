"""§3.2 / §3.3 science: the Θ-head recovers a planted Θ, the regularizer cuts a planted correlation,
readings, pair choice and the refusals of bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from neudep_assets.lib.analysis.incremental import (ClassSplit, choose_split, compare_heads, epoch_times, readings,
                                                    train_head)
from neudep_assets.lib.analysis.regularization import (SHAPE_THRESHOLD, choose_pairs, ood_aupr, resolve_pairs,
                                                       shape_similarity, skeleton, unrelated_glyphs, unrelated_names)
from neudep_assets.lib.config import ConfigError
from neudep_assets.lib.models.finetune import pair_penalty


def test_theta_head_recovers_a_planted_theta():
    """Labels drawn from softmax([f, Θ*ᵀf]) (a well-specified multinomial model with the base logits as a
    fixed offset): the cross-entropy fit of Θ alone is the maximum-likelihood estimate, so it lands on Θ*."""
    rng = np.random.default_rng(0)
    n, nb, nn_ = 40000, 4, 2
    F = rng.normal(size=(n, nb)).astype(np.float32)
    theta = np.array([[1.5, 0.0], [0.0, -1.0], [-1.0, 1.2], [0.0, 0.8]])
    full = np.concatenate([F, F @ theta], 1)
    p = np.exp(full - full.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    head = train_head(F, F, y, nn_, bias=False, epochs=30, lr=0.02, batch_size=2000, seed=0)
    assert np.abs(head.weight - theta).max() < 0.1, head.weight
    # an ℓ1 weight shrinks Θ towards zero
    sparse = train_head(F, F, y, nn_, bias=False, l1=0.05, epochs=30, lr=0.02, batch_size=2000, seed=0)
    assert np.abs(sparse.weight).sum() < np.abs(head.weight).sum()


def test_pair_penalty_is_differentiable_and_cuts_a_planted_correlation():
    torch.manual_seed(0)
    x = torch.randn(512, 6, dtype=torch.float64)
    lin = torch.nn.Linear(6, 5, bias=False).double()
    with torch.no_grad():
        lin.weight[1] = lin.weight[0] * 0.9 + 0.1 * lin.weight[1]  # logits 0 and 1 strongly correlated
    assert torch.autograd.gradcheck(lambda z: pair_penalty(z, [(0, 1)]), (lin(x[:8]).detach().requires_grad_(),))
    before = float(pair_penalty(lin(x), [(0, 1)]).detach())
    opt = torch.optim.SGD(lin.parameters(), lr=0.05)
    for _ in range(20):
        loss = pair_penalty(lin(x), [(0, 1)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(pair_penalty(lin(x), [(0, 1)]).detach())
    assert before > 0.2 and after < 0.1 * before
    # centered gauge: a common offset of all logits is not a correlation
    z = torch.randn(256, 4, dtype=torch.float64) * 0.01 + 5.0
    assert float(pair_penalty(z, [(0, 1)], "raw")) > 20 and float(pair_penalty(z, [(0, 1)], "centered")) < 1e-3


def test_readings_group_argmax_and_pos_neg():
    split = ClassSplit("90/10", 0, base=np.array([0, 2]), new=np.array([1]))
    # columns in (base, new) order: classes 0, 2, 1
    L = np.array([[5, 0, 9.0],   # label 0: overall wrong (new wins), base-group right
                  [0, 5, 1.0],   # label 2: right
                  [0, 9, 5.0],   # label 1: overall wrong, new-group right (only one new class)
                  [0, 0, 5.0]])  # label 1: right
    r = readings(L, np.array([0, 2, 1, 1]), split)
    assert r["overall_acc"] == 0.5 and r["base_acc"] == 1.0 and r["new_acc"] == 1.0
    assert r["pos_neg_acc"] == 0.5  # 2 positives (1 right) + 2 negatives (1 right)


def test_bad_splits_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="incremental.splits.*no new"):
        choose_split(5, "90/10", 0)
    with pytest.raises(ConfigError, match="incremental.splits.*no base"):
        choose_split(1, "all_but_one", 0)
    with pytest.raises(ConfigError, match="incremental.splits.*class 3.*no training sample"):
        choose_split(10, "90/10", 0, train_labels=np.array([0, 1, 2, 4, 5, 6, 7, 8, 9]))
    s = choose_split(20, "90/10", 7)
    assert len(s.new) == 2 and len(s.base) == 18 and not set(s.new) & set(s.base)
    assert (choose_split(20, "90/10", 7).new == s.new).all()


def test_bad_pairs_are_refused_naming_the_key():
    names = ["a latin small letter a", "б cyrillic small letter be"]
    assert resolve_pairs([("A LATIN SMALL LETTER A", names[1])], names) == [(0, 1)]
    with pytest.raises(ConfigError, match=r"regularization.pairs\[0\].*no class named 'zzz'"):
        resolve_pairs([(names[0], "zzz")], names)
    with pytest.raises(ConfigError, match=r"regularization.pairs\[0\].*same class twice"):
        resolve_pairs([(names[0], names[0].upper())], names)


def test_pair_choice_skips_classes_a_human_relates():
    assert not unrelated_glyphs("a", "b")[0]           # same script
    assert not unrelated_glyphs("a", "а")[0]           # Latin a, Cyrillic a: same letter
    assert not unrelated_glyphs("é", "E")[0]           # same script, same base letter after decomposition
    assert not unrelated_glyphs("▢", "◻")[0]           # two squares (other symbol categories): shared word
    assert not unrelated_glyphs("1", "¹")[0]           # digit one and superscript one
    assert unrelated_glyphs("b", "ж")[0] and unrelated_glyphs("ĸ", "⇘")[0]
    labels = ["a", "а", "b", "ж"]
    edges = pd.DataFrame({"target_class": [0, 2, 1], "source_class": [1, 3, 2], "coef": [0.9, -0.5, 0.1]})
    chosen = choose_pairs(edges, labels, labels, "glyphs", 2)
    assert [(c["class_a"], c["class_b"]) for c in chosen] == [(2, 3), (1, 2)]
    assert "different scripts" in chosen[0]["reason"]


@pytest.mark.parametrize("a, b, test", [
    ("ℎ", "h", "name test: the same letter"),     # the default demo's pick: U+210E's NFKD is h
    ("Υ", "Y", "name test: the same letter"),     # an earlier pick: Greek capital upsilon, a confusable of Y
    ("Α", "A", "name test: the same letter"),     # Greek capital alpha
    ("А", "A", "name test: the same letter"),     # Cyrillic capital a
    ("ⅰ", "i", "name test: the same letter"),     # small roman numeral one: NFKD i
    ("ĸ", "κ", "shape test"),                     # Latin kra, Greek kappa: no name in common, the same shape
    ("m", "т", "shape test"),                     # Latin m, Cyrillic te (drawn as m in the italic faces)
])
def test_the_reported_pairs_are_related_and_the_reason_names_the_test(a, b, test):
    ok, why = unrelated_glyphs(a, b)
    assert not ok and why.startswith(test), why
    assert not unrelated_glyphs(b, a)[0]


def test_both_tests_alone_relate_the_reported_pairs():
    """Each guard on its own: the name skeletons agree, and the rendered shapes correlate above the threshold."""
    for a, b in (("ℎ", "h"), ("Υ", "Y"), ("Α", "A")):
        assert skeleton(a) == skeleton(b)
        assert shape_similarity(a, b) >= SHAPE_THRESHOLD
    assert skeleton("b") != skeleton("ж") and shape_similarity("b", "ж") < SHAPE_THRESHOLD


def test_shape_similarity_against_a_direct_correlation():
    """The shape test is the largest Pearson correlation over face pairs: a glyph against itself is 1,
    the measure is symmetric, and it is at least np.corrcoef of any one face pair's blurred renderings."""
    from scipy.ndimage import gaussian_filter

    from neudep_assets.lib.data.glyph_catalog import FACES, face_mask, rasterize

    assert shape_similarity("ж", "ж") == pytest.approx(1.0)
    assert shape_similarity("b", "ж") == pytest.approx(shape_similarity("ж", "b"))
    face = next(f for i, f in enumerate(FACES) if face_mask(ord("b")) >> i & 1 and face_mask(ord("ж")) >> i & 1)
    imgs = [gaussian_filter(rasterize(face, [ord(c)], 64)[0].astype(float).reshape(32, 2, 32, 2).mean((1, 3)), 1.0)
            for c in "bж"]
    assert shape_similarity("b", "ж") >= np.corrcoef(imgs[0].ravel(), imgs[1].ravel())[0, 1] - 1e-9
    assert np.isnan(shape_similarity("ab", "c"))


def test_choose_pairs_passes_over_the_reported_pairs_to_a_planted_unrelated_one():
    labels = ["ℎ", "h", "Υ", "Y", "b", "ж"]
    names = [f"{c} name" for c in labels]
    edges = pd.DataFrame({"target_class": [0, 2, 4], "source_class": [1, 3, 5], "coef": [0.9, 0.8, 0.3]})
    (pair,) = choose_pairs(edges, labels, names, "glyphs", 1)
    assert (pair["class_a"], pair["class_b"]) == (4, 5) and pair["reason"].startswith("rank 3 by |coef| = 0.3")
    assert "name and shape tests passed" in pair["reason"] and "rendered correlation" in pair["reason"]
    assert "ℎ ~ h (name test: the same letter" in pair["reason"] and "Υ ~ Y (name test" in pair["reason"]
    with pytest.raises(ConfigError, match="no dependency between unrelated classes.*2 pairs, all related"):
        choose_pairs(edges.iloc[:2], labels, names, "glyphs", 1)


def test_imagefolder_pairs_use_the_name_test_alone_and_say_so():
    assert not unrelated_names("tabby, tabby cat", "tiger cat")[0]
    assert not unrelated_names("Café", "CAFE")[0]
    ok, why = unrelated_names("apple", "boat")
    assert ok and "no shape test" in why
    names = ["tabby, tabby cat", "tiger cat", "apple", "boat"]
    edges = pd.DataFrame({"target_class": [0, 2], "source_class": [1, 3], "coef": [0.9, 0.5]})
    (pair,) = choose_pairs(edges, names, names, "imagefolder", 1)
    assert (pair["class_a"], pair["class_b"]) == (2, 3) and "ImageFolder" in pair["reason"]
    assert "names share ['cat']" in pair["reason"]


def test_epoch_times_compare_as_the_paper_does():
    """A head's epoch is the base's forward pass plus its updates, against the all-class model's epoch."""
    t = epoch_times(0.5, 3.0, 10.0)
    assert t == {"epoch_seconds": 3.5, "epoch_seconds_cached": 0.5, "baseline_epoch_seconds": 10.0,
                 "time_ratio": 0.35, "time_ratio_cached": 0.05}
    assert epoch_times(None, 3.0, 10.0)["time_ratio"] == 1.0
    assert np.isnan(epoch_times(0.5, 3.0, float("nan"))["time_ratio"])


def test_compare_heads_times_include_the_base_forward_pass():
    rng = np.random.default_rng(0)
    split = ClassSplit("90/10", 0, base=np.array([0, 1, 2]), new=np.array([3]))
    F, y = rng.normal(size=(40, 3)), rng.integers(0, 4, 40)
    recs = compare_heads(F, F, y, F, F, y, rng.normal(size=(40, 4)), split, seeds=1, l1=0.0, epochs=2, lr=0.01,
                         batch_size=16, forward_seconds=7.0, baseline_epoch_seconds=20.0)
    heads = [r for r in recs if r["method"] != "all_classes"]
    assert all(r["epoch_seconds"] == pytest.approx(7.0 + r["epoch_seconds_cached"]) for r in heads)
    assert all(r["time_ratio"] == pytest.approx(r["epoch_seconds"] / 20.0) and r["time_ratio"] > 0.35 for r in heads)
    (full,) = [r for r in recs if r["method"] == "all_classes"]
    assert full["epoch_seconds"] == 20.0 and full["time_ratio"] == 1.0 and full["epoch_seconds_cached"] is None


def test_ood_aupr_reference():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    ind, ood = rng.normal(size=(50, 5)) * 4, rng.normal(size=(30, 5))
    sm = lambda z: (np.exp(z) / np.exp(z).sum(1, keepdims=True)).max(1)  # noqa: E731
    ref = average_precision_score(np.r_[np.zeros(50), np.ones(30)], -np.r_[sm(ind), sm(ood)])
    assert ood_aupr(ind, ood) == pytest.approx(ref)
    assert ood_aupr(ind, ood) > 30 / 80  # confident in-distribution logits: better than chance
