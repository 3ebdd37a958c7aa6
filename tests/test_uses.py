"""§3.2 / §3.3 science: the Θ-head recovers a planted Θ, the regularizer cuts a planted correlation,
readings, pair choice and the refusals of bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from neudep_assets.lib.analysis.incremental import ClassSplit, choose_split, readings, train_head
from neudep_assets.lib.analysis.regularization import (choose_pairs, ood_aupr, resolve_pairs, unrelated_glyphs)
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
    assert not unrelated_glyphs("a", "а")[0]           # Latin a, Cyrillic a: same base letter
    assert not unrelated_glyphs("é", "E")[0]           # same script, same base letter after decomposition
    assert not unrelated_glyphs("▢", "◻")[0]           # two squares (other symbol categories): shared word
    assert not unrelated_glyphs("1", "¹")[0]           # digit one and superscript one
    assert unrelated_glyphs("b", "ж")[0] and unrelated_glyphs("ĸ", "⇘")[0]
    labels = ["a", "а", "b", "ж"]
    edges = pd.DataFrame({"target_class": [0, 2, 1], "source_class": [1, 3, 2], "coef": [0.9, -0.5, 0.1]})
    chosen = choose_pairs(edges, labels, labels, "glyphs", 2)
    assert [(c["class_a"], c["class_b"]) for c in chosen] == [(2, 3), (1, 2)]
    assert "different scripts" in chosen[0]["reason"]


def test_ood_aupr_reference():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    ind, ood = rng.normal(size=(50, 5)) * 4, rng.normal(size=(30, 5))
    sm = lambda z: (np.exp(z) / np.exp(z).sum(1, keepdims=True)).max(1)  # noqa: E731
    ref = average_precision_score(np.r_[np.zeros(50), np.ones(30)], -np.r_[sm(ind), sm(ood)])
    assert ood_aupr(ind, ood) == pytest.approx(ref)
    assert ood_aupr(ind, ood) > 30 / 80  # confident in-distribution logits: better than chance
