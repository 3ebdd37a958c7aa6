"""`find_dependencies` and `between_dependencies`: the dependency assets' analysis, called on logits in memory.

The assets' own analysis (defs/dependency_assets.py calls the same lib/analysis/problem.py): the second
moment of the fit logits (`second_moment`, float64), the analysis's arrays in the chosen gauge
(`within_problem`, `between_problem`) and `solve` (CovLasso along the λ path with its certificate,
Table-1 metrics, redundancy and screening diagnostics, the offset-direction share); `save` commits it
with the assets' own row builder (lib/analysis/store_rows.py).
"""

from __future__ import annotations

import hashlib

import numpy as np

from neudep_assets.api import inputs
from neudep_assets.api.result import Dependencies
from neudep_assets.lib.analysis.moments import second_moment
from neudep_assets.lib.analysis.problem import between_moments, between_problem, solve, within_problem
from neudep_assets.lib.analysis.store_rows import DEPENDENCIES_CODE_VERSION, identity
from neudep_assets.lib.config import DependencyConfig, stable_hash

DEFAULT_LAMBDAS = (0.5, 0.2, 0.1, 0.05, 0.02)
TOL = 1e-9  # the project default (dependencies.tol): the certificate every committed analysis passes


def _digest(*arrays) -> str:
    """Content hash of arrays (dtype, shape and bytes): the analysis's key follows its data."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _config(lambdas, lambda_mode, gauge, target_chunk, exact_path, evaluated: bool) -> DependencyConfig:
    if not isinstance(exact_path, bool):
        raise ValueError(f"exact_path must be True or False, got {exact_path!r}")
    return DependencyConfig(lambdas=inputs.lambdas(lambdas, lambda_mode), lambda_mode=lambda_mode, fit_split="train",
                            eval_split="val" if evaluated else "train", tol=TOL,
                            target_chunk=inputs.target_chunk(target_chunk), logit_gauge=inputs.gauge(gauge),
                            gauge_crosscheck=False, store_path=exact_path)


def find_dependencies(fit_logits, *, eval_logits=None, eval_labels=None, lambdas=DEFAULT_LAMBDAS,
                      lambda_mode: str = "relative", gauge: str = "raw", class_names=None, device: str = "auto",
                      target_chunk: int | None = None, exact_path: bool = False) -> Dependencies:
    """Within-model dependencies of every class: each logit as a sparse combination of the others.

    For each class i and each λ, the CovLasso (paper Eq. 2) on C = E[f fᵀ] of `fit_logits`, certified
    (relative KKT ≤ 1e-9), then the paper's Table-1 metrics, the redundancy of each class (§2.2) and the
    screening checks (§2.3). The same computation as the pipeline's ``dependencies`` asset.

    Parameters
    ----------
    fit_logits : array or tensor, (samples, classes)
        Raw logits the dependencies are fitted on (numpy, or torch on any device).
    eval_logits : array or tensor, (samples, classes), optional
        Logits of other samples the Table-1 metrics are measured on. Without them the metrics are
        in-sample: measured on `fit_logits` (``metrics["evaluated_on"] == "fit"``).
    eval_labels : array of int, optional
        Labels of the evaluated samples (of `fit_logits` when `eval_logits` is None), −1 = no class.
        Without labels the accuracies (acc, pos_acc and their originals) are NaN; the errors are computed.
    lambdas : sequence of float
        The λ grid: fractions of each target's λ_max (``lambda_mode="relative"``, in (0, 1]) or
        absolute values (``"absolute"``, ≥ 0).
    lambda_mode : {"relative", "absolute"}
    gauge : {"raw", "centered"}
        raw: the logits as they are (the paper's); centered: each sample's logits minus their mean.
    class_names : list of str, optional
        One name per class (default "class 0", "class 1", ...).
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
        The CovLasso runs on CUDA when asked (or "auto" finds it), else on CPU threads (numba).
    target_chunk : int, optional
        Solve (and certify) this many targets at a time (bounds memory; the result is the same).
    exact_path : bool
        Also keep each target's exact path (its knots), for :meth:`Dependencies.at` at any λ and an exact
        :meth:`Dependencies.sparsest`.

    Returns
    -------
    Dependencies
        ``.edges``, ``.metrics``, ``.diagnostics``, ``.at``, ``.sparsest``, ``.star``, ``.save``.

    Raises
    ------
    ValueError, TypeError
        Before any work, naming the argument: shape, NaN/inf, sample or class counts, names, λ, gauge, device.

    Examples
    --------
    >>> import numpy as np
    >>> from neudep_assets import find_dependencies
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(2000, 6)).astype(np.float32)
    >>> f[:, 5] = 0.7 * f[:, 0] - 0.3 * f[:, 2]          # class 5 depends on classes 0 and 2
    >>> deps = find_dependencies(f, lambdas=[0.1, 0.01])
    >>> sorted(deps.at(0.01).query("target == 5")["source"])
    [0, 2]
    """
    F = inputs.logits(fit_logits, "fit_logits")
    n = F.shape[1]
    E = None if eval_logits is None else inputs.logits(eval_logits, "eval_logits", n_classes=n)
    ev = F if E is None else E
    lab_of = "fit_logits" if E is None else "eval_logits"
    lab = (np.full(len(ev), -1, np.int64) if eval_labels is None
           else inputs.labels(eval_labels, "eval_labels", len(ev), n, lab_of))
    names = inputs.class_names(class_names, n)
    eff = _config(lambdas, lambda_mode, gauge, target_chunk, exact_path, E is not None)
    dev = inputs.solver_device(device)

    res = solve(within_problem(second_moment(F), ev, lab, eff.logit_gauge), eff, device=dev)
    fit = _digest(F)  # sha256 of the fit logits, once (80 MB at 20,000 × 1,000: ≈ 0.15 s)
    data = fit + "|" + _digest(E, None if eval_labels is None else lab)
    key = "within-" + stable_hash({"data": data, "cfg": identity(eff), "code": DEPENDENCIES_CODE_VERSION})
    return Dependencies(res, eff, names, kind="within", run_key=key, moments_id=f"api-{fit[:16]}")


def between_dependencies(source_fit, target_fit, *, source_eval=None, target_eval=None, eval_labels=None,
                         lambdas=DEFAULT_LAMBDAS, lambda_mode: str = "relative", gauge: str = "raw",
                         class_names=None, device: str = "auto", target_chunk: int | None = None,
                         exact_path: bool = False) -> Dependencies:
    """Between-model dependencies (paper Eq. 4): each logit g_i of a target model as a sparse combination
    of a source model's logits f_j, j ≠ i, on the same samples.

    The same computation as the pipeline's ``between_dependencies`` asset: C = E[f fᵀ], E[f gᵀ] and E[g²]
    of the fit samples (both models in `gauge`), the CovLasso of every target class, Table-1 metrics with
    g's logit i replaced by its reconstruction from f.

    Parameters
    ----------
    source_fit, target_fit : array or tensor, (samples, classes)
        Logits of the source model f and the target model g on the same samples, in the same order, of
        the same classes.
    source_eval, target_eval : array or tensor, optional
        Both models' logits of other samples for the Table-1 metrics (both or neither; without them the
        metrics are in-sample, ``metrics["evaluated_on"] == "fit"``).
    eval_labels : array of int, optional
        Labels of the evaluated samples, −1 = no class (without them the accuracies are NaN).
    lambdas, lambda_mode, gauge, class_names, device, target_chunk, exact_path
        As in :func:`find_dependencies`.

    Returns
    -------
    Dependencies

    Examples
    --------
    >>> import numpy as np
    >>> from neudep_assets import between_dependencies
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(2000, 5))
    >>> g = f @ rng.normal(size=(5, 5)) * 0.1 + rng.normal(size=(2000, 5))
    >>> g[:, 4] = 0.8 * f[:, 1]                          # g's class 4 is f's class 1, scaled
    >>> deps = between_dependencies(f, g, lambdas=[0.05])
    >>> deps.at(0.05).query("target == 4")[["source", "coef"]].round(2).values.tolist()
    [[1.0, 0.76]]
    """
    F = inputs.logits(source_fit, "source_fit")
    n = F.shape[1]
    G = inputs.logits(target_fit, "target_fit", n_classes=n, n_samples=len(F), samples_of="source_fit")
    if (source_eval is None) != (target_eval is None):
        raise ValueError("source_eval and target_eval: give both (logits of the same eval samples) or neither")
    if source_eval is None:
        Fe, Ge = F, G
    else:
        Fe = inputs.logits(source_eval, "source_eval", n_classes=n)
        Ge = inputs.logits(target_eval, "target_eval", n_classes=n, n_samples=len(Fe), samples_of="source_eval")
    lab = (np.full(len(Fe), -1, np.int64) if eval_labels is None else
           inputs.labels(eval_labels, "eval_labels", len(Fe), n, "target_fit" if source_eval is None else "target_eval"))
    names = inputs.class_names(class_names, n)
    eff = _config(lambdas, lambda_mode, gauge, target_chunk, exact_path, source_eval is not None)
    dev = inputs.solver_device(device)

    moments = between_moments(F, G, eff.logit_gauge)
    res = solve(between_problem(moments, Fe, Ge, lab, eff.logit_gauge), eff, device=dev)
    fit = [_digest(F), _digest(G)]
    data = fit + [_digest(None if source_eval is None else Fe, None if source_eval is None else Ge,
                          None if eval_labels is None else lab)]
    key = "between-" + stable_hash({"data": data, "cfg": identity(eff), "code": DEPENDENCIES_CODE_VERSION})
    return Dependencies(res, eff, names, kind="between", run_key=key,
                        moments_id=f"api-{fit[0][:16]}-x-api-{fit[1][:16]}")
