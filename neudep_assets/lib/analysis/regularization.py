"""§3.3, the dependency regularizer: which pairs to cut, and the Table-3 readings (OOD AUPR).

The regularized fine-tune itself needs the models (``neudep_assets.lib.models.finetune``)."""

from __future__ import annotations

import functools
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

# Letters of other scripts drawn like a Latin letter (a small, cheap subset of Unicode's confusables.txt;
# the shape test below catches the rest): Greek and Cyrillic capitals and small letters, a few Armenian.
_CONFUSABLES = str.maketrans(dict(zip(
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧϜϹϳοινρυχϲ" "АВЕЅІЈКМНОРСТХУҮԚԜаеоросухѕіјԁһӏԛԝү" "ՕՏօսհոզ",
    "ABEZHIKMNOPTYXFCjoivpuxc" "ABESIJKMHOPCTXYYQWaeopocyxsijdhlqwy" "OSouhnq")))

SHAPE_THRESHOLD = 0.95  # rendered-shape correlation at or above which two glyphs count as the same shape
SHAPE_PX = 32           # rendering size of the shape test (the default dataset's image size)


def glyph_letter(char: str) -> tuple[str, str, frozenset]:
    """(script, base letter, content words) of a glyph, from its canonical decomposition's first
    character: the project's script grouping (``script_of``: a letter's script, else DIGIT / NUMBER /
    SYMBOL-… / PUNCTUATION), the last word of its Unicode name, and the words of that name that are not
    script, case, size or colour words (é → ('LATIN', 'E', {E}), ▢ → ('SYMBOL-So', 'CORNERS', {SQUARE, ...}))."""
    from neudep_assets.lib.data.glyph_catalog import script_of

    base = unicodedata.normalize("NFD", char)[:1] or char
    words = unicodedata.name(base, "").split()
    return script_of(ord(base)), (words[-1] if words else base), frozenset(words) - _STOP


def skeleton(text: str) -> str:
    """What is left of ``text`` once form is set aside: compatibility decomposition (NFKD: ℎ → h,
    ¹ → 1, ﬁ → fi), combining marks dropped (é → e), known look-alikes of other scripts mapped to
    the Latin letter (Greek Υ → Y, Cyrillic а → a), then casefold (Υ → y)."""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(c for c in s if not unicodedata.combining(c)).translate(_CONFUSABLES)
    return unicodedata.normalize("NFKC", s).casefold()


@functools.lru_cache(maxsize=4096)
def _shape_vectors(char: str) -> np.ndarray:
    """One row per face that draws ``char``: its rendering (the dataset's own layout, SHAPE_PX px,
    Gaussian blur σ = 1 px so that a stroke-width difference does not count), mean removed, unit norm."""
    from scipy.ndimage import gaussian_filter

    from neudep_assets.lib.data.glyph_catalog import FACES, face_mask, rasterize

    rows, mask = [], face_mask(ord(char))
    for fi, face in enumerate(FACES):
        if not mask >> fi & 1:
            continue
        big = rasterize(face, [ord(char)], 2 * SHAPE_PX)[0].astype(np.float64) / 255.0
        img = big.reshape(SHAPE_PX, 2, SHAPE_PX, 2).mean(axis=(1, 3))
        if img.sum() <= 1.0:  # no ink: the face lacks the glyph
            continue
        v = gaussian_filter(img, 1.0).ravel()
        v = v - v.mean()
        rows.append(v / np.linalg.norm(v))
    return np.asarray(rows).reshape(len(rows), SHAPE_PX * SHAPE_PX)


def shape_similarity(a: str, b: str) -> float:
    """Largest Pearson correlation between a rendering of glyph ``a`` and one of ``b`` over all pairs
    of faces (a glyph drawn in one face like the other in another face is the same shape to the
    model, which sees every face); NaN when either is not a single character or draws in no face."""
    if len(a) != 1 or len(b) != 1:
        return float("nan")
    A, B = _shape_vectors(a), _shape_vectors(b)
    return float((A @ B.T).max()) if len(A) and len(B) else float("nan")


def unrelated_glyphs(a: str, b: str, threshold: float = SHAPE_THRESHOLD) -> tuple[bool, str]:
    """Would a human not relate glyphs ``a`` and ``b``? Related as soon as one test says so, in this
    order, and the reason names it: the same skeleton (:func:`skeleton`: NFKD, marks, confusables,
    casefold), the same script, the same base letter, a shared content word of their Unicode names
    (two squares, a digit and its superscript), or the same shape (rendered correlation ≥ ``threshold``
    in some pair of faces: Υ and Y, ℎ and h). Unrelated only when every test fails."""
    ka, kb = skeleton(a), skeleton(b)
    if ka == kb:
        return False, f"name test: the same letter after NFKD, casefold and confusables ({a} → {ka}, {b} → {kb})"
    (sa, la, wa), (sb, lb, wb) = glyph_letter(a), glyph_letter(b)
    if sa == sb:
        return False, f"name test: same script ({sa})"
    if la == lb:
        return False, f"name test: same base letter ({la})"
    if wa & wb:
        return False, f"name test: names share {sorted(wa & wb)}"
    r = shape_similarity(a, b)
    if r >= threshold:
        return False, f"shape test: rendered shapes correlate {r:.3f} ≥ {threshold}"
    shape = "no rendering to compare" if np.isnan(r) else f"rendered correlation {r:.3f} < {threshold}"
    return True, (f"name and shape tests passed: different scripts ({sa} vs {sb}), letters after NFKD, casefold "
                  f"and confusables ({ka} vs {kb}), base letters ({la} vs {lb}) and name words; {shape}")


_NAME_STOP = frozenset("the and of with for from".split())


def unrelated_names(a: str, b: str) -> tuple[bool, str]:
    """The name test alone, for classes without glyph renders (ImageFolder): related when the names
    (:func:`skeleton` of each) are equal or share a word of three letters or more (tabby cat ~ tiger cat)."""
    import re

    ka, kb = skeleton(a), skeleton(b)
    if ka == kb:
        return False, f"name test: the same name after NFKD, casefold and confusables ({ka})"
    words = [set(re.findall(r"[^\W_]{3,}", k)) - _NAME_STOP for k in (ka, kb)]
    shared = words[0] & words[1]
    if shared:
        return False, f"name test: names share {sorted(shared)}"
    return True, "name test passed (no shared name word); ImageFolder classes have no glyph renders, so no shape test"


def choose_pairs(edges: pd.DataFrame, class_labels: list[str], class_names: list[str], dataset_kind: str,
                 n_pairs: int) -> list[dict]:
    """The ``n_pairs`` strongest within-model dependencies (largest |coef|; each unordered pair once)
    between classes a human would not relate, with why each was chosen.

    ``edges``: target_class, source_class, coef of one analysis at one λ. Glyphs: :func:`unrelated_glyphs`
    (name tests and the shape test). Other datasets: :func:`unrelated_names` on the class names (no
    renders, and timm's ImageNet info holds synsets but no WordNet hierarchy). The reason names the
    tests passed and up to three stronger pairs passed over, each with the test that related them.
    """
    if edges.empty:
        raise ConfigError("regularization.pairs is empty and the model has no dependency at regularization.lambda_rel "
                          "to choose from; name the pairs in regularization.pairs")
    e = edges.assign(strength=edges["coef"].abs()).sort_values("strength", ascending=False, kind="stable")
    chosen, seen, skipped = [], set(), []
    for row in e.itertuples():
        i, j = int(row.target_class), int(row.source_class)
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        if dataset_kind == "glyphs":
            ok, why = unrelated_glyphs(class_labels[i], class_labels[j])
        else:
            ok, why = unrelated_names(class_names[i], class_names[j])
        if not ok:
            skipped.append(f"{class_labels[i]} ~ {class_labels[j]} ({why})")
            continue
        passed = f"; stronger pairs passed over: {'; '.join(skipped[:3])}" if skipped else ""
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        chosen.append({"class_a": i, "class_b": j, "name_a": class_names[i], "name_b": class_names[j],
                       "coef": float(row.coef),
                       "reason": f"rank {len(seen)} by |coef| = {row.strength:.3g}; {why}{passed}{more}"})
        skipped = []
        if len(chosen) == n_pairs:
            break
    if not chosen:
        raise ConfigError("regularization: no dependency between unrelated classes at regularization.lambda_rel "
                          f"({len(seen)} pairs, all related, e.g. {'; '.join(skipped[:2])}); name the pairs in "
                          "regularization.pairs")
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
