"""§3.3, the dependency regularizer: which pairs to cut, and the Table-3 readings (OOD AUPR).

The regularized fine-tune itself needs the models (``neudep_assets.lib.models.finetune``)."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from neudep_assets.lib.config import ConfigError


def resolve_pairs(pairs, class_names: list[str]) -> list[tuple[int, int]]:
    """Class names (exact, or case-insensitive) → indices; refused naming `regularization.pairs[k]`."""
    lower = {n.lower(): i for i, n in enumerate(class_names)}
    out = []
    for k, pair in enumerate(pairs):
        idx = []
        for name in pair:
            i = lower.get(str(name).lower())
            if i is None:
                raise ConfigError(f"regularization.pairs[{k}]: no class named {name!r} in the dataset")
            idx.append(i)
        if idx[0] == idx[1]:
            raise ConfigError(f"regularization.pairs[{k}] names the same class twice: {pair[0]!r}")
        out.append((idx[0], idx[1]))
    return out


# words of Unicode names that say nothing about what a glyph looks like or means
_STOP = frozenset("LATIN GREEK CYRILLIC ARMENIAN GEORGIAN HEBREW ARABIC COPTIC SMALL CAPITAL LETTER WITH AND SIGN "
                  "SYMBOL DIGIT MODIFIER WHITE BLACK MEDIUM LARGE SMALL VERY HEAVY LIGHT DOUBLE FULLWIDTH OF THE "
                  "FINAL FORM".split())


def glyph_letter(char: str) -> tuple[str, str, frozenset]:
    """(script, base letter, content words) of a glyph, from its canonical decomposition's first
    character: the project's script grouping (``script_of``: a letter's script, else DIGIT / NUMBER /
    SYMBOL-… / PUNCTUATION), the last word of its Unicode name, and the words of that name that are not
    script, case, size or colour words (é → ('LATIN', 'E', {E}), ▢ → ('SYMBOL-So', 'CORNERS', {SQUARE, ...}))."""
    from neudep_assets.lib.data.glyph_catalog import script_of

    base = unicodedata.normalize("NFD", char)[:1] or char
    words = unicodedata.name(base, "").split()
    return script_of(ord(base)), (words[-1] if words else base), frozenset(words) - _STOP


def unrelated_glyphs(a: str, b: str) -> tuple[bool, str]:
    """Would a human not relate glyphs ``a`` and ``b``? Different scripts, different base letters, and
    no shared content word in their Unicode names (two squares, or a digit and its superscript, are related)."""
    (sa, la, wa), (sb, lb, wb) = glyph_letter(a), glyph_letter(b)
    if sa == sb:
        return False, f"same script ({sa})"
    if la == lb:
        return False, f"same base letter ({la})"
    if wa & wb:
        return False, f"names share {sorted(wa & wb)}"
    return True, f"different scripts ({sa} vs {sb}), base letters ({la} vs {lb}) and name words"


def choose_pairs(edges: pd.DataFrame, class_labels: list[str], class_names: list[str], dataset_kind: str,
                 n_pairs: int) -> list[dict]:
    """The ``n_pairs`` strongest within-model dependencies (largest |coef|; each unordered pair once)
    between classes a human would not relate, with why each was chosen.

    ``edges``: target_class, source_class, coef of one analysis at one λ. Glyphs: different scripts and
    different base letters (Unicode names and decompositions). Other datasets: timm's ImageNet info
    holds synsets but no WordNet hierarchy, so the strongest dependencies are taken, and the reason says so.
    """
    if edges.empty:
        raise ConfigError("regularization.pairs is empty and the model has no dependency at regularization.lambda_rel "
                          "to choose from; name the pairs in regularization.pairs")
    e = edges.assign(strength=edges["coef"].abs()).sort_values("strength", ascending=False, kind="stable")
    chosen, seen = [], set()
    for row in e.itertuples():
        i, j = int(row.target_class), int(row.source_class)
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        if dataset_kind == "glyphs":
            ok, why = unrelated_glyphs(class_labels[i], class_labels[j])
            if not ok:
                continue
            reason = f"rank {len(seen)} by |coef| = {row.strength:.3g}; {why}"
        else:
            reason = (f"rank {len(seen)} by |coef| = {row.strength:.3g}; no WordNet hierarchy in timm's synset info, "
                      "so the strongest dependency")
        chosen.append({"class_a": i, "class_b": j, "name_a": class_names[i], "name_b": class_names[j],
                       "coef": float(row.coef), "reason": reason})
        if len(chosen) == n_pairs:
            break
    if not chosen:
        raise ConfigError("regularization: no dependency between unrelated classes at regularization.lambda_rel; "
                          "name the pairs in regularization.pairs")
    return chosen


def ood_aupr(in_logits: np.ndarray, ood_logits: np.ndarray) -> float:
    """AUPR of OOD detection: the ood samples are the positives, the score is −max softmax
    (scikit-learn's ``average_precision_score``)."""
    from scipy.special import softmax
    from sklearn.metrics import average_precision_score

    if len(ood_logits) == 0 or len(in_logits) == 0:
        return float("nan")
    score = -np.concatenate([softmax(np.asarray(in_logits, np.float64), axis=1).max(1),
                             softmax(np.asarray(ood_logits, np.float64), axis=1).max(1)])
    truth = np.concatenate([np.zeros(len(in_logits)), np.ones(len(ood_logits))])
    return float(average_precision_score(truth, score))


def child_readings(val_logits: np.ndarray, val_labels: np.ndarray, ood_logits: np.ndarray | None) -> dict:
    """Table 3's accuracy (val, top-1) and OOD AUPR of one checkpoint."""
    keep = np.asarray(val_labels) >= 0
    acc = float((np.asarray(val_logits)[keep].argmax(1) == np.asarray(val_labels)[keep]).mean())
    aupr = ood_aupr(np.asarray(val_logits)[keep], ood_logits) if ood_logits is not None else float("nan")
    return {"accuracy": acc, "ood_aupr": aupr}


def check_ood_disjoint(ood_classes: list[str], train_classes: list[str], where: str) -> None:
    """Refuse an ood split whose class folders are also training classes (they would not be OOD)."""
    shared = sorted(set(ood_classes) & set(train_classes))
    if shared:
        raise ConfigError(f"{where}: the ood split shares {len(shared)} class(es) with the training classes "
                          f"(e.g. {shared[:3]}); OOD images must be of no training class")
