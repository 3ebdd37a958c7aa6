"""Checks of the public API's arguments, all before any work, each error naming its argument."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from neudep_assets.lib.analysis.dependencies import check_target_chunk
from neudep_assets.lib.analysis.moments import check_finite
from neudep_assets.lib.config import LOGIT_GAUGES

LAMBDA_MODES = ("relative", "absolute")
DEVICES = "auto, cpu, cuda, cuda:N or mps"


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def as_numpy(x, name: str) -> np.ndarray:
    """A numpy array of `x` (numpy array, torch tensor on any device, nested list), or TypeError naming
    `name` for what is not real numbers."""
    if _is_torch(x):
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"{name} must hold real numbers, got a complex tensor")
        if t.dtype.is_floating_point and t.element_size() < 4:  # float16 / bfloat16: numpy has no bfloat16
            t = t.float()
        x = t.cpu().numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}: {exc}") from None
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def logits(x, name: str, *, n_classes: int | None = None, n_samples: int | None = None,
           samples_of: str = "") -> np.ndarray:
    """Logits (samples × classes): 2-D, ≥ 1 sample, ≥ 2 classes, finite; `n_classes` / `n_samples` when
    they must match another argument (`samples_of` names it)."""
    a = as_numpy(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of logits (samples × classes), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 2:
        raise ValueError(f"{name} must have at least 1 sample and 2 classes, got shape {a.shape}")
    if n_classes is not None and a.shape[1] != n_classes:
        raise ValueError(f"{name} has {a.shape[1]} classes (columns) but the fit logits have {n_classes}")
    if n_samples is not None and a.shape[0] != n_samples:
        raise ValueError(f"{name} has {a.shape[0]} samples (rows) but {samples_of} has {n_samples}: "
                         "the same samples in the same order")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    check_finite(a, name)
    return a


def labels(x, name: str, n_samples: int, n_classes: int, samples_of: str) -> np.ndarray:
    """Class labels (int, −1 = no class) of `n_samples` samples, each in [−1, n_classes)."""
    a = as_numpy(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {a.shape}")
    if a.shape[0] != n_samples:
        raise ValueError(f"{name} has {a.shape[0]} labels but {samples_of} has {n_samples} samples")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise ValueError(f"{name} must be integer class indices (−1 = no class)")
    a = a.astype(np.int64)
    if a.size and (a.min() < -1 or a.max() >= n_classes):
        raise ValueError(f"{name} must lie in [-1, {n_classes}) (−1 = no class), got values from {a.min()} to "
                         f"{a.max()}")
    return a


def class_names(x, n_classes: int, name: str = "class_names") -> list[str]:
    """`n_classes` names (default: "class 0", "class 1", ...)."""
    if x is None:
        return [f"class {i}" for i in range(n_classes)]
    if isinstance(x, str) or not hasattr(x, "__len__"):
        raise TypeError(f"{name} must be a list of {n_classes} strings, got {type(x).__name__}")
    names = list(x)
    if len(names) != n_classes:
        raise ValueError(f"{name} has {len(names)} names but the logits have {n_classes} classes")
    bad = [k for k, s in enumerate(names) if not isinstance(s, str)]
    if bad:
        raise TypeError(f"{name} must be strings; entry {bad[0]} is {type(names[bad[0]]).__name__}: "
                        f"{names[bad[0]]!r}")
    return names


def lambdas(x, mode: str) -> tuple[float, ...]:
    """A non-empty λ grid of distinct finite numbers: fractions of λ_max in (0, 1] (relative), ≥ 0 (absolute)."""
    if mode not in LAMBDA_MODES:
        raise ValueError(f"lambda_mode must be one of {', '.join(LAMBDA_MODES)}, got {mode!r}")
    vals = [x] if isinstance(x, Real) else x
    try:
        vals = list(vals)
    except TypeError:
        raise TypeError(f"lambdas must be a number or a sequence of numbers, got {type(x).__name__}") from None
    if not vals or any(isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"lambdas must be a non-empty sequence of finite numbers ≥ 0, got {x!r}")
    if mode == "relative" and any(not 0 < v <= 1 for v in vals):
        raise ValueError(f"lambdas are fractions of each target's λ_max (lambda_mode='relative') and must lie in "
                         f"(0, 1], got {[v for v in vals if not 0 < v <= 1]}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"lambdas has duplicates {sorted({v for v in vals if vals.count(v) > 1})}: each λ once")
    return tuple(float(v) for v in vals)


def gauge(x) -> str:
    if x not in LOGIT_GAUGES:
        raise ValueError(f"gauge must be one of {', '.join(LOGIT_GAUGES)}, got {x!r}")
    return x


def device(x) -> str:
    """The device asked for, checked to exist: "auto" picks cuda → mps → cpu."""
    if not isinstance(x, str) or not (x in ("auto", "cpu", "mps", "cuda") or
                                      (x.startswith("cuda:") and x[5:].isdigit())):
        raise ValueError(f"device must be one of {DEVICES}, got {x!r}")
    from neudep_assets.lib.models.logits import pick_device

    try:
        return pick_device(None if x == "auto" else x)
    except ValueError as exc:
        raise ValueError(f"device: {exc}") from None


def solver_device(x) -> str | None:
    """The CovLasso's device, as the dependency assets pick it: CUDA runs the batched torch homotopy,
    cpu and mps (no float64) the numba one (None)."""
    dev = device(x)
    return dev if dev.startswith("cuda") else None


def target_chunk(x) -> int | None:
    return check_target_chunk(x, "target_chunk")


def positive_int(x, name: str) -> int | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, Integral) or x < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {x!r}")
    return int(x)
