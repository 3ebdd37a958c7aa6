"""§3.2, new categories from old logits: the base/new split, the Θ-head and the linear-head baseline,
and the Table 2 / Table 4 readings.

Every head sees the base model's logits of the base classes unchanged and adds logits for the new
classes: the Θ-head as Θᵀ f_base(x) (Θ: base × new, no bias), the linear head as Wᵀ φ(x) + b on the
base model's penultimate features φ. Only the head is trained, with cross-entropy over all classes
(base then new) on the training samples of all classes, optionally with an ℓ1 weight on Θ / W.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from neudep_assets.lib.config import INCREMENTAL_SPLITS, ConfigError, split_sizes


class SplitError(ConfigError):
    """A base/new split that cannot be used; the message names the key."""


@dataclass(frozen=True)
class ClassSplit:
    setting: str
    seed: int
    base: np.ndarray  # global class indices, sorted
    new: np.ndarray

    def order(self) -> np.ndarray:
        """Global class index of each column of a head's full logits (base classes, then new ones)."""
        return np.concatenate([self.base, self.new])

    def to_json(self) -> dict:
        return {"setting": self.setting, "seed": self.seed, "base": self.base.tolist(), "new": self.new.tolist()}


def choose_split(n_classes: int, setting: str, seed: int, train_labels: np.ndarray | None = None) -> ClassSplit:
    """The new classes drawn at random (seeded) for `setting` (`90/10`, `95/5`, `all_but_one`).

    Refused with a message naming `incremental.splits` when a side would be empty, and naming the
    class when it has no training sample (nothing could learn it)."""
    if setting not in INCREMENTAL_SPLITS:
        raise SplitError(f"incremental.splits: unknown split {setting!r} (known: {sorted(INCREMENTAL_SPLITS)})")
    _, n_new = split_sizes(n_classes, setting)
    if train_labels is not None:
        counts = np.bincount(np.asarray(train_labels)[np.asarray(train_labels) >= 0], minlength=n_classes)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            raise SplitError(f"incremental.splits: class {int(empty[0])} (and {len(empty) - 1} more) has no training "
                             f"sample; split {setting!r} cannot train it (dataset train split)")
    rng = np.random.default_rng(seed)
    new = np.sort(rng.choice(n_classes, size=n_new, replace=False))
    base = np.setdiff1d(np.arange(n_classes), new)
    return ClassSplit(setting=setting, seed=seed, base=base, new=new)


def local_labels(labels: np.ndarray, split: ClassSplit) -> np.ndarray:
    """Global labels → column index in the (base, new) order; −1 stays −1 (ood)."""
    pos = np.full(int(max(split.order().max(), np.max(labels, initial=0))) + 1, -1, dtype=np.int64)
    pos[split.order()] = np.arange(len(split.order()))
    labels = np.asarray(labels)
    return np.where(labels >= 0, pos[np.clip(labels, 0, None)], -1)


@dataclass
class Head:
    weight: np.ndarray  # (inputs, n_new)
    bias: np.ndarray | None
    epoch_seconds: float  # mean wall time of one epoch of updates over the given inputs (no base forward pass)

    def new_logits(self, inputs: np.ndarray) -> np.ndarray:
        out = np.asarray(inputs, dtype=np.float64) @ self.weight
        return out + self.bias if self.bias is not None else out


def train_head(inputs: np.ndarray, base_logits: np.ndarray, labels: np.ndarray, n_new: int, *, bias: bool,
               l1: float = 0.0, epochs: int = 10, lr: float = 0.01, batch_size: int = 256, seed: int = 0) -> Head:
    """Train new-class logits ``inputs @ W (+ b)`` beside the frozen ``base_logits`` with cross-entropy
    over all classes; ``labels`` are column indices (base first, then new). ``inputs`` is the base
    logits themselves for the Θ-head (``bias=False``), the penultimate features for the linear head.
    Adam, zero initial weights, seeded minibatch order; l1·‖W‖₁ added to the loss."""
    import torch
    import torch.nn.functional as F

    X = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    B = torch.as_tensor(np.asarray(base_logits, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if not (len(X) == len(B) == len(y)) or (y < 0).any() or (y >= B.shape[1] + n_new).any():
        raise ValueError(f"train_head: {len(X)} inputs, {len(B)} base logits, {len(y)} labels in [0, "
                         f"{B.shape[1] + n_new}) expected")
    W = torch.zeros(X.shape[1], n_new, requires_grad=True)
    b = torch.zeros(n_new, requires_grad=True) if bias else None
    opt = torch.optim.Adam([W] + ([b] if bias else []), lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    n, bs = len(y), max(1, min(batch_size, len(y)))
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            new = X[idx] @ W + (b if bias else 0)
            loss = F.cross_entropy(torch.cat([B[idx], new], 1), y[idx])
            if l1:
                loss = loss + l1 * W.abs().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    return Head(weight=W.detach().double().numpy(), bias=b.detach().double().numpy() if bias else None,
                epoch_seconds=float(np.mean(seconds)))


def readings(full_logits: np.ndarray, labels: np.ndarray, split: ClassSplit, *, seed: int = 0) -> dict:
    """Table 2 and Table 4 readings of logits whose columns are in (base, new) order; ``labels`` global.

    overall: argmax over all classes; base / new (Table 4): argmax within the base (new) group, on the
    samples of that group; pos_neg (the paper's "999 → 1 (pos & neg)"): accuracy on the samples of
    the new classes plus as many samples of base classes drawn at random (seeded), argmax over all.
    """
    y = local_labels(labels, split)
    keep = y >= 0
    L, y = np.asarray(full_logits)[keep], y[keep]
    nb = len(split.base)
    pred = L.argmax(1)
    is_new = y >= nb
    out = {"overall_acc": float((pred == y).mean()),
           "base_acc": float((L[~is_new, :nb].argmax(1) == y[~is_new]).mean()) if (~is_new).any() else float("nan"),
           "new_acc": float((L[is_new, nb:].argmax(1) + nb == y[is_new]).mean()) if is_new.any() else float("nan")}
    pos = np.flatnonzero(is_new)
    rng = np.random.default_rng(seed)
    neg = rng.choice(np.flatnonzero(~is_new), size=min(len(pos), int((~is_new).sum())), replace=False)
    both = np.concatenate([pos, neg])
    out["pos_neg_acc"] = float((pred[both] == y[both]).mean()) if len(both) else float("nan")
    return out


def compare_heads(base_train: np.ndarray, feats_train: np.ndarray, labels_train: np.ndarray, base_val: np.ndarray,
                  feats_val: np.ndarray, labels_val: np.ndarray, all_class_val: np.ndarray, split: ClassSplit, *,
                  seeds: int, l1: float, epochs: int, lr: float, batch_size: int, forward_seconds: float = float("nan"),
                  baseline_epoch_seconds: float = float("nan")) -> list[dict]:
    """Per seed, the readings of the Θ-head (on the base logits), the linear head (on the base features)
    and the all-class model (its val logits, columns in global order); labels global. Each record:
    seed, method, the readings, the times (:func:`epoch_times`), and for the Θ-head its Θ and full val
    logits. The same seed draws the same pos & neg negatives for the three.

    ``forward_seconds``: the frozen base's forward pass over the training images (one epoch's images);
    ``baseline_epoch_seconds``: one training epoch of the all-class model over the same images."""
    y = local_labels(labels_train, split)
    out = []
    for seed in range(seeds):
        kw = dict(l1=l1, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        theta = train_head(base_train, base_train, y, len(split.new), bias=False, **kw)
        lin = train_head(feats_train, base_train, y, len(split.new), bias=True, **kw)
        for method, head, inputs in (("theta_head", theta, base_val), ("linear_head", lin, feats_val)):
            full = np.concatenate([base_val, head.new_logits(inputs)], 1)
            out.append({"seed": seed, "method": method, **readings(full, labels_val, split, seed=seed),
                        **epoch_times(head.epoch_seconds, forward_seconds, baseline_epoch_seconds),
                        **({"theta": head.weight, "full_logits": full} if method == "theta_head" else {})})
        out.append({"seed": seed, "method": "all_classes",
                    **epoch_times(None, forward_seconds, baseline_epoch_seconds),
                    **readings(np.asarray(all_class_val)[:, split.order()], labels_val, split, seed=seed)})
    return out


def epoch_times(head_cached_seconds: float | None, forward_seconds: float, baseline_epoch_seconds: float) -> dict:
    """§3.2's time per epoch, as the paper compares it ("less than 60% time consumption of the baseline
    in each epoch"): a head's epoch is the frozen base's forward pass over the epoch's images plus the
    head's updates (``epoch_seconds``), against one training epoch of the all-class model
    (``baseline_epoch_seconds``); ``time_ratio`` = their ratio. Beside it, the head's epoch over cached
    base logits (``epoch_seconds_cached``, ``time_ratio_cached``): what this pipeline pays per epoch,
    since it computes the base logits once. ``head_cached_seconds`` None: the all-class model's row."""
    base = float(baseline_epoch_seconds)
    if head_cached_seconds is None:
        return {"epoch_seconds": base, "epoch_seconds_cached": None, "baseline_epoch_seconds": base,
                "time_ratio": 1.0 if base > 0 else float("nan"), "time_ratio_cached": None}
    cached, full = float(head_cached_seconds), float(forward_seconds) + float(head_cached_seconds)
    return {"epoch_seconds": full, "epoch_seconds_cached": cached, "baseline_epoch_seconds": base,
            "time_ratio": full / base if base > 0 else float("nan"),
            "time_ratio_cached": cached / base if base > 0 else float("nan")}


def theta_edges(theta: np.ndarray, split: ClassSplit, tol: float = 0.0) -> "pd.DataFrame":
    """Θ as dependency edges: target = new class, source = base class (global indices), coef = Θ entry."""
    import pandas as pd

    src, tgt = np.nonzero(np.abs(theta) > tol)
    return pd.DataFrame({"lambda_index": 0, "target_class": split.new[tgt].astype(np.int64),
                         "source_class": split.base[src].astype(np.int64), "coef": theta[src, tgt].astype(float)})


def theta_targets(theta: np.ndarray, full_logits: np.ndarray, labels: np.ndarray, split: ClassSplit, *,
                  l1: float, orig_acc: float) -> "pd.DataFrame":
    """Per new class of a Θ-head, in the dependency_metrics layout: sources (nonzero Θ entries), the
    head's overall accuracy beside the all-class model's, and the class's own recall (Pos Acc).
    ``kkt`` is 0 by convention: Θ is trained (Adam on cross-entropy), not a CovLasso solution, so there
    is no KKT violation to certify; the 0 lets it through the store's certificate gate."""
    import pandas as pd

    y = local_labels(labels, split)
    pred = np.asarray(full_logits).argmax(1)
    nb, known = len(split.base), y >= 0
    return pd.DataFrame([{
        "lambda_index": 0, "target_class": int(c), "lambda_abs": float(l1), "kkt": 0.0, "n_sources": int((theta[:, k] != 0).sum()),
        "acc": float((pred[known] == y[known]).mean()), "orig_acc": float(orig_acc),
        "pos_acc": float((pred[y == nb + k] == nb + k).mean()) if (y == nb + k).any() else float("nan"),
        "n_pos": int((y == nb + k).sum())} for k, c in enumerate(split.new)])
