"""Embedded default dataset: many-category glyph images rendered from matplotlib's fonts.

Each class is one character (Latin incl. accented letters, Greek, Cyrillic, Armenian, digits,
symbols, ...).  The list of usable characters, and the faces each renders in, is shipped as
``data/glyph_classes.json`` (computed offline by ``scripts/make_glyph_classes.py``: every
character there renders in >= 6 of the 16 Unicode faces matplotlib ships, and near-identical
characters across scripts -- Latin A / Greek Alpha / Cyrillic A -- were removed by comparing
renderings).

Images are **white glyph on a dark background**: float32 in [0, 1] from
:meth:`GlyphRenderer.render`, uint8 0..255 in the cached ``.npz`` splits.

This module: the class list, fonts and rasterising (numpy + matplotlib; no torch).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from neudep_assets.lib.specs import GLYPH_CLASSES_FILE, GlyphConfig, shipped_glyph_list

#: Bump whenever the rasteriser or the augmentation changes the produced pixels.
RENDERER_VERSION = "glyph-renderer-2"

#: The 16 Unicode faces matplotlib ships (file stems under mpl-data/fonts/ttf), in a fixed order.
#: Bit i of a class's face mask in glyph_classes.json refers to FACES[i].
FACES: tuple[str, ...] = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
)
MIN_FACES = 6


# Layout of a glyph in its cell (fractions of the cell side): the em square is EM_FRAC of the
# cell, the baseline sits BASELINE_FRAC from the top, and the ink is centred horizontally.
EM_FRAC = 0.75
BASELINE_FRAC = 0.76
FIT_FRAC = 0.9       # a glyph wider than this fraction of the cell is scaled down to it
MARGIN_FRAC = 0.02   # ... and one reaching closer than this to the top / bottom edge

# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GlyphClass:
    index: int        # class index (0..n-1) or -1 for ood
    codepoint: int
    char: str
    name: str         # unicodedata.name, e.g. "LATIN SMALL LETTER A WITH GRAVE"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# shipped class list
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[tuple[int, ...], dict[int, int]]:
    """(code points in shipped order, code point -> face bitmask over FACES)."""
    try:
        data = json.loads(shipped_glyph_list())
        faces = tuple(data["faces"])
        rows = data["classes"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"glyph class list {GLYPH_CLASSES_FILE} is corrupt: {e}") from e
    if faces != FACES:
        raise ValueError(f"glyph class list {GLYPH_CLASSES_FILE} was made for faces {faces}, "
                         f"expected {FACES}")
    cps = tuple(int(r[0]) for r in rows)
    masks = {int(r[0]): int(r[1]) for r in rows}
    return cps, masks


_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC", "ARMENIAN", "GEORGIAN", "HEBREW", "ARABIC",
                      "LAO", "THAI", "COPTIC", "TIFINAGH", "GLAGOLITIC", "NKO", "CHEROKEE"})


def script_of(cp: int) -> str:
    """Coarse group of a character (script for letters, else category), to mix classes."""
    ch = chr(cp)
    cat = unicodedata.category(ch)
    if cat[0] == "L":
        word = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
        return word if word in _SCRIPTS else "LETTERLIKE"
    if cat == "Nd":
        return "DIGIT"
    if cat[0] == "N":
        return "NUMBER"
    if cat[0] == "S":
        return "SYMBOL-" + cat
    return "PUNCTUATION" if cat[0] == "P" else "OTHER"


def _make_glyph(index: int, cp: int) -> GlyphClass:
    ch = chr(cp)
    return GlyphClass(index=index, codepoint=cp, char=ch, name=unicodedata.name(ch, f"U+{cp:04X}"))


def _mixed_pick(pool: list[int], n: int, rng: np.random.Generator) -> list[int]:
    """Pick n code points from pool, spread over scripts (allocation ~ sqrt(group size))."""
    if n <= 0:
        return []
    groups: dict[str, list[int]] = {}
    for cp in pool:
        groups.setdefault(script_of(cp), []).append(cp)
    keys = sorted(groups)
    sizes = np.array([len(groups[k]) for k in keys], dtype=np.float64)
    alloc = np.zeros(len(keys), dtype=np.int64)
    remaining = n
    while remaining > 0:
        room = sizes - alloc
        open_ = room > 0
        w = np.where(open_, np.sqrt(sizes), 0.0)
        share = w / w.sum() * remaining
        add = np.minimum(np.floor(share).astype(np.int64), room.astype(np.int64))
        if add.sum() == 0:  # hand out the remainder one by one to the largest shares
            order = np.lexsort((np.arange(len(keys)), -share))
            for i in order:
                if remaining == 0:
                    break
                if room[i] > 0:
                    alloc[i] += 1
                    remaining -= 1
            continue
        alloc += add
        remaining -= int(add.sum())
    chosen: list[int] = []
    for k, a in zip(keys, alloc):
        g = groups[k]
        perm = rng.permutation(len(g))[:a]
        chosen.extend(g[i] for i in perm)
    return chosen


#: Always classes when n_classes ≥ 62 (below that the first n_classes // 2 of them, so that a small set
#: still mixes scripts): README's examples and users' first queries ("small letter a") must find them.
#: Part of the dataset id (SELECTION_VERSION).
CORE_CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SELECTION_VERSION = "core-alphanumerics-1"


@functools.lru_cache(maxsize=64)
def _selection(cfg: GlyphConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    cps, _ = _shipped()
    order = {cp: i for i, cp in enumerate(cps)}
    rng = np.random.default_rng([cfg.seed, 0x61797068])  # class-selection stream
    core = [ord(c) for c in CORE_CHARACTERS if ord(c) in order]
    core = core if cfg.n_classes >= len(core) else core[:cfg.n_classes // 2]
    taken = set(core)
    pool = [cp for cp in cps if cp not in taken]
    classes = sorted(core + _mixed_pick(pool, cfg.n_classes - len(core), rng), key=order.__getitem__)
    chosen = set(classes)
    rest = [cp for cp in cps if cp not in chosen]
    ood = sorted(_mixed_pick(rest, cfg.n_ood_classes, rng), key=order.__getitem__)
    return tuple(classes), tuple(ood)


def glyph_classes(cfg: GlyphConfig) -> list[GlyphClass]:
    """The cfg.n_classes classes, chosen deterministically from the shipped list with cfg.seed."""
    return [_make_glyph(i, cp) for i, cp in enumerate(_selection(cfg)[0])]


def ood_glyphs(cfg: GlyphConfig) -> list[GlyphClass]:
    """cfg.n_ood_classes shipped characters that are not classes (index -1)."""
    return [_make_glyph(-1, cp) for cp in _selection(cfg)[1]]


def dataset_id(cfg: GlyphConfig) -> str:
    import matplotlib

    h = hashlib.sha256()
    h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    h.update(b"\0")
    h.update(hashlib.sha256(shipped_glyph_list()).digest())
    h.update(b"\0" + RENDERER_VERSION.encode() + b"\0" + SELECTION_VERSION.encode())
    # the fonts and FreeType come with matplotlib: a new matplotlib may change pixels
    h.update(b"\0" + matplotlib.__version__.encode())
    return "glyphs-" + h.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# rasterising glyphs with matplotlib's FreeType wrapper
# --------------------------------------------------------------------------------------------
def font_path(face: str) -> pathlib.Path:
    import matplotlib

    return pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{face}.ttf"


_FONT_LOCK = threading.Lock()  # FT2Font objects are shared and stateful (set_size)


@functools.lru_cache(maxsize=None)
def _font(face: str):
    from matplotlib.ft2font import FT2Font

    return FT2Font(str(font_path(face)))


@functools.lru_cache(maxsize=None)
def face_charmap(face: str) -> frozenset[int]:
    return frozenset(_font(face).get_charmap())


def rasterize(face: str, codepoints, cell: int) -> np.ndarray:
    """Render code points in one face into (n, cell, cell) uint8 images (white on black).

    Layout: the em square is EM_FRAC*cell pixels, the baseline is BASELINE_FRAC*cell from the top,
    and the ink is centred horizontally; a glyph too wide (> FIT_FRAC*cell) or too tall for the cell
    is drawn smaller (same baseline) so that it fits. A code point not in
    the face gives an all-zero image.
    """
    with _FONT_LOCK:
        return _rasterize_locked(face, codepoints, cell)


def _rasterize_locked(face: str, codepoints, cell: int) -> np.ndarray:
    from matplotlib.ft2font import LoadFlags

    font = _font(face)
    cmap = face_charmap(face)
    font.set_size(EM_FRAC * cell, 72)  # 72 dpi: points == pixels
    pad = 2 * cell
    big = 5 * cell
    baseline = BASELINE_FRAC * cell
    out = np.zeros((len(codepoints), cell, cell), dtype=np.uint8)
    for i, cp in enumerate(codepoints):
        if cp not in cmap:
            continue
        try:
            g = font.load_char(cp, LoadFlags.NO_HINTING)
        except RuntimeError:
            continue
        # glyphs too wide or tall for the cell are drawn smaller so that they fit
        x0, y0, x1, y1 = (v / 64.0 for v in g.bbox)
        fit = min(1.0, FIT_FRAC * cell / max(x1 - x0, 1e-6),
                  (baseline - MARGIN_FRAC * cell) / max(y1, 1e-6),
                  ((1 - MARGIN_FRAC) * cell - baseline) / max(-y0, 1e-6))
        if fit < 1.0:
            font.set_size(EM_FRAC * cell * fit, 72)
            g = font.load_char(cp, LoadFlags.NO_HINTING)
            font.set_size(EM_FRAC * cell, 72)
        buf = np.zeros((big, big), dtype=np.uint8)
        font.draw_glyph_to_bitmap(buf, pad, pad, g)
        cols = np.flatnonzero(buf.any(axis=0))
        if cols.size == 0:
            continue
        # the bitmap's top row is drawn at row `pad`; it lies bbox_ymax above the baseline
        base_row = pad + g.bbox[3] / 64.0
        top = int(round(base_row - baseline))
        cx = 0.5 * (cols[0] + cols[-1] + 1)
        left = int(round(cx - cell / 2))
        top_c, left_c = max(top, 0), max(left, 0)
        src = buf[top_c:top + cell, left_c:left + cell]
        out[i, top_c - top:top_c - top + src.shape[0], left_c - left:left_c - left + src.shape[1]] = src
    return out


def face_mask(cp: int) -> int:
    """Bitmask over FACES of the faces a code point renders in (shipped list, else charmaps)."""
    m = _shipped()[1].get(cp)
    if m is not None:
        return m
    return sum(1 << i for i, f in enumerate(FACES) if cp in face_charmap(f))


