"""Embedded default dataset: many-category glyph images rendered from matplotlib's fonts.

Each class is one character (Latin incl. accented letters, Greek, Cyrillic, Armenian, digits,
symbols, ...).  The list of usable characters, and the faces each renders in, is shipped as
``data/glyph_classes.json`` (computed offline by ``scripts/make_glyph_classes.py``: every
character there renders in >= 6 of the 16 Unicode faces matplotlib ships, and near-identical
characters across scripts -- Latin A / Greek Alpha / Cyrillic A -- were removed by comparing
renderings).

Images are **white glyph on a dark background**: float32 in [0, 1] from
:meth:`GlyphRenderer.render`, uint8 0..255 in the cached ``.npz`` splits.

Pure numpy / torch / matplotlib; no dagster import.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import threading
import time
import unicodedata
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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

CLASSES_FILE = pathlib.Path(__file__).resolve().parent / "data" / "glyph_classes.json"

# Layout of a glyph in its cell (fractions of the cell side): the em square is EM_FRAC of the
# cell, the baseline sits BASELINE_FRAC from the top, and the ink is centred horizontally.
EM_FRAC = 0.75
BASELINE_FRAC = 0.76
FIT_FRAC = 0.9       # a glyph wider than this fraction of the cell is scaled down to it
MARGIN_FRAC = 0.02   # ... and one reaching closer than this to the top / bottom edge

SPLITS = ("train", "val", "ood")


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GlyphConfig:
    n_classes: int = 300
    n_ood_classes: int = 100
    image_size: int = 32
    train_per_class: int = 60
    val_per_class: int = 20
    ood_per_class: int = 5
    seed: int = 0

    def __post_init__(self):
        _MIN = {"n_classes": 1, "n_ood_classes": 0, "image_size": 8, "train_per_class": 0,
                "val_per_class": 0, "ood_per_class": 0, "seed": 0}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"GlyphConfig.{f.name} must be an int, got {v!r}")
            if v < _MIN[f.name]:
                raise ValueError(f"GlyphConfig.{f.name} must be >= {_MIN[f.name]}, got {v!r}")
            object.__setattr__(self, f.name, int(v))
        if self.image_size > 256:
            raise ValueError(f"GlyphConfig.image_size must be <= 256, got {self.image_size}")
        n_avail = len(_shipped()[0])
        if self.n_classes + self.n_ood_classes > n_avail:
            raise ValueError(
                f"GlyphConfig: n_classes + n_ood_classes = {self.n_classes + self.n_ood_classes} "
                f"exceeds the {n_avail} characters in {CLASSES_FILE.name}")

    @classmethod
    def from_dict(cls, d: dict) -> "GlyphConfig":
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ValueError(f"glyph config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"unknown glyph config key {k!r} (known: {sorted(known)})")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
def _shipped_raw() -> bytes:
    try:
        return CLASSES_FILE.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"glyph class list {CLASSES_FILE} is missing; run "
                                f"scripts/make_glyph_classes.py") from e


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[tuple[int, ...], dict[int, int]]:
    """(code points in shipped order, code point -> face bitmask over FACES)."""
    try:
        data = json.loads(_shipped_raw())
        faces = tuple(data["faces"])
        rows = data["classes"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"glyph class list {CLASSES_FILE} is corrupt: {e}") from e
    if faces != FACES:
        raise ValueError(f"glyph class list {CLASSES_FILE} was made for faces {faces}, "
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


@functools.lru_cache(maxsize=64)
def _selection(cfg: GlyphConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    cps, _ = _shipped()
    order = {cp: i for i, cp in enumerate(cps)}
    rng = np.random.default_rng([cfg.seed, 0x61797068])  # class-selection stream
    classes = sorted(_mixed_pick(list(cps), cfg.n_classes, rng), key=order.__getitem__)
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
    h.update(hashlib.sha256(_shipped_raw()).digest())
    h.update(b"\0" + RENDERER_VERSION.encode())
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


# --------------------------------------------------------------------------------------------
# torch renderer
# --------------------------------------------------------------------------------------------
def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of (N, 1, H, W)."""
    k = _gauss_kernel(sigma).to(x)
    r = (k.numel() - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0)), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r)), k.view(1, 1, -1, 1))


class GlyphRenderer:
    """Prerendered atlas (class x face) on torch; renders augmented samples fast.

    The atlas holds every (glyph, face) pair the glyph renders in, at twice the output resolution
    and slightly blurred (which both anti-aliases the down-sampling and lets a per-sample threshold
    thin or thicken the strokes). :meth:`render` draws, per sample, a face, a scale, an aspect
    change, a shear, a rotation, a shift, a stroke weight and edge softness, a foreground and
    background level with a brightness ramp, and a noise level (ranges: class attributes below).

    Output: float32 (B, 1, S, S) in [0, 1], **white glyph on a dark background**.
    """

    # augmentation ranges
    ROTATE_DEG = 15.0
    SCALE = (0.86, 1.06)
    ASPECT = 0.12            # log-aspect, uniform in [-a, a]
    SHEAR = 0.18
    SHIFT = 0.12             # of the half-width ([-1, 1] coordinates), before the linear map
    STROKE_T = (0.2, 0.6)    # threshold on the blurred glyph: low -> bold, high -> thin
    STROKE_W = (0.12, 0.45)  # width of the soft threshold: small -> crisp edges, large -> soft
    FG = (0.65, 1.0)
    BG = (0.0, 0.3)
    RAMP = 0.12              # amplitude of a linear brightness ramp across the background
    NOISE = (0.0, 0.14)      # std of per-pixel gaussian noise
    CHUNK = 4096

    def __init__(self, glyphs: list[GlyphClass], image_size: int, atlas: torch.Tensor,
                 pair_index: torch.Tensor, face_avail: torch.Tensor):
        self.glyphs = list(glyphs)
        self.image_size = int(image_size)
        self.atlas = atlas                # (P, 1, A, A) float32
        self.pair_index = pair_index      # (G, F) long, -1 where the glyph lacks the face
        self.face_avail = face_avail      # (G, F) float32 0/1

    @classmethod
    def for_classes(cls, glyphs: list[GlyphClass], image_size: int) -> "GlyphRenderer":
        glyphs = list(glyphs)
        if not glyphs:
            raise ValueError("GlyphRenderer needs at least one glyph")
        cell = 2 * int(image_size)
        masks = [face_mask(g.codepoint) for g in glyphs]
        pair_index = torch.full((len(glyphs), len(FACES)), -1, dtype=torch.long)
        tiles = []
        n = 0
        for fi, face in enumerate(FACES):
            rows = [gi for gi, m in enumerate(masks) if m >> fi & 1]
            if not rows:
                continue
            imgs = rasterize(face, [glyphs[gi].codepoint for gi in rows], cell)
            ok = imgs.reshape(len(rows), -1).max(axis=1) > 0
            rows = [r for r, k in zip(rows, ok) if k]
            imgs = imgs[ok]
            pair_index[rows, fi] = torch.arange(n, n + len(rows))
            n += len(rows)
            tiles.append(torch.from_numpy(imgs))
        face_avail = (pair_index >= 0).float()
        missing = [glyphs[i].char for i in torch.nonzero(face_avail.sum(1) == 0).flatten().tolist()]
        if missing:
            raise ValueError(f"glyphs render in no face: {missing!r}")
        atlas = torch.cat(tiles).unsqueeze(1).float().div_(255.0)
        atlas = _blur(atlas, sigma=0.9)
        # normalise so that each tile's strokes reach 1 after blurring (thin strokes stay visible)
        peak = atlas.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        atlas = (atlas / peak).clamp_(0, 1).contiguous()
        return cls(glyphs, image_size, atlas, pair_index, face_avail)

    def __len__(self) -> int:
        return len(self.glyphs)

    @property
    def device(self) -> torch.device:
        return self.atlas.device

    def to(self, device) -> "GlyphRenderer":
        """Move the atlas (and so the rendering) to `device`; returns self."""
        self.atlas = self.atlas.to(device)
        self.pair_index = self.pair_index.to(device)
        self.face_avail = self.face_avail.to(device)
        return self

    def render(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Render augmented samples of glyphs[idx]: float32 (B, 1, S, S) in [0, 1], white on dark.

        All randomness comes from `generator` (drawn on its device, CPU by default), so the same
        generator state gives the same images. The images are computed, and returned, on the
        renderer's device (CPU unless moved with :meth:`to`).
        """
        idx = torch.as_tensor(idx, dtype=torch.long).flatten().to(self.device)
        if idx.numel() and (idx.min() < 0 or idx.max() >= len(self.glyphs)):
            raise IndexError(f"glyph positions must lie in [0, {len(self.glyphs)})")
        outs = [self._render_chunk(idx[s:s + self.CHUNK], generator)
                for s in range(0, idx.numel(), self.CHUNK)]
        if not outs:
            S = self.image_size
            return torch.zeros((0, 1, S, S), dtype=torch.float32, device=self.device)
        return torch.cat(outs)

    def _render_chunk(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        B, S = idx.numel(), self.image_size
        gdev, dev = gen.device, self.device

        def U(lo, hi, *shape):
            return torch.rand(*(shape or (B,)), generator=gen, device=gdev).to(dev) * (hi - lo) + lo

        face = torch.multinomial(self.face_avail[idx].to(gdev), 1, generator=gen).to(dev).squeeze(1)
        src = self.atlas[self.pair_index[idx, face]]                      # (B, 1, A, A)

        ang = U(-self.ROTATE_DEG, self.ROTATE_DEG) * (math.pi / 180)
        scale = U(*self.SCALE)
        asp = torch.exp(U(-self.ASPECT, self.ASPECT))
        shear = U(-self.SHEAR, self.SHEAR)
        shift = U(-self.SHIFT, self.SHIFT, B, 2)
        t = U(*self.STROKE_T)
        w = U(*self.STROKE_W)
        ramp = U(-self.RAMP, self.RAMP, B, 2)
        fg = U(*self.FG)
        bg = U(*self.BG)
        sigma = U(*self.NOISE)
        noise = torch.randn(B, 1, S, S, generator=gen, device=gdev).to(dev)

        # output coords -> input coords: inverse of (rotate . shear . scale)
        sx, sy = scale * asp.sqrt(), scale / asp.sqrt()
        c, s = torch.cos(ang), torch.sin(ang)
        # forward map M = R @ Sh @ D, D = diag(sx, sy), Sh = [[1, shear], [0, 1]]
        m00, m01 = c * sx, (c * shear - s) * sy
        m10, m11 = s * sx, (s * shear + c) * sy
        det = m00 * m11 - m01 * m10
        theta = torch.stack([
            torch.stack([m11 / det, -m01 / det, -shift[:, 0]], 1),
            torch.stack([-m10 / det, m00 / det, -shift[:, 1]], 1),
        ], 1)
        grid = F.affine_grid(theta, [B, 1, S, S], align_corners=False)
        v = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # stroke weight: soft threshold of the blurred glyph
        y = ((v - t.view(B, 1, 1, 1)) / w.view(B, 1, 1, 1) + 0.5).clamp_(0, 1)
        # background: level bg plus a linear ramp across the image
        lin = torch.linspace(-1.0, 1.0, S, device=dev)
        back = (bg.view(B, 1, 1, 1) + ramp[:, 0].view(B, 1, 1, 1) * lin.view(1, 1, 1, S)
                + ramp[:, 1].view(B, 1, 1, 1) * lin.view(1, 1, S, 1))
        img = back + (fg.view(B, 1, 1, 1) - back) * y
        img = img + sigma.view(B, 1, 1, 1) * noise
        return img.clamp_(0, 1)


# --------------------------------------------------------------------------------------------
# cached splits
# --------------------------------------------------------------------------------------------
def _split_seed(cfg: GlyphConfig, split: str) -> int:
    h = hashlib.sha256(f"{cfg.seed}:{split}:{RENDERER_VERSION}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _atomic_write(path: pathlib.Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def render_split(renderer: GlyphRenderer, labels_of_pos: np.ndarray, per_class: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """per_class samples of each glyph of the renderer, class-major order, as uint8 + labels."""
    n = len(renderer)
    pos = torch.arange(n).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    imgs = renderer.render(pos, gen)
    images = (imgs[:, 0] * 255.0).round_().to(torch.uint8).numpy()
    labels = np.asarray(labels_of_pos, dtype=np.int64)[pos.numpy()]
    return images, labels


def build_splits(cfg: GlyphConfig, root: pathlib.Path, log=print) -> dict[str, pathlib.Path]:
    """Render train/val/ood once and cache them under root/datasets/<dataset_id>/.

    Files: {train,val,ood}.npz (images uint8 (N,S,S), labels int64 (N,), ood labels -1) and
    classes.json. Each file is written to a temp name and renamed into place; classes.json is
    written last, so a folder holding all four files is complete and is returned at once.
    """
    did = dataset_id(cfg)
    folder = pathlib.Path(root) / "datasets" / did
    paths = {s: folder / f"{s}.npz" for s in SPLITS}
    meta_path = folder / "classes.json"
    if meta_path.exists() and all(p.exists() for p in paths.values()):
        log(f"glyphs: {did} cached at {folder}")
        return dict(paths)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    classes = glyph_classes(cfg)
    ood = ood_glyphs(cfg)
    plan = {
        "train": (classes, cfg.train_per_class, [g.index for g in classes]),
        "val": (classes, cfg.val_per_class, [g.index for g in classes]),
        "ood": (ood, cfg.ood_per_class, [-1] * len(ood)),
    }
    renderers: dict[int, GlyphRenderer] = {}
    for split, (glyphs, per, labels) in plan.items():
        if paths[split].exists():
            continue
        S = cfg.image_size
        if glyphs and per > 0:
            key = id(glyphs)
            if key not in renderers:
                renderers[key] = GlyphRenderer.for_classes(glyphs, S)
            images, lab = render_split(renderers[key], np.array(labels), per, _split_seed(cfg, split))
        else:
            images, lab = np.zeros((0, S, S), np.uint8), np.zeros((0,), np.int64)
        _atomic_write(paths[split], lambda fh: np.savez(fh, images=images, labels=lab))
        log(f"glyphs: wrote {paths[split]} ({len(lab)} images)")
    meta = {
        "dataset_id": did,
        "config": cfg.to_dict(),
        "renderer_version": RENDERER_VERSION,
        "image_layout": "white glyph on dark background, uint8",
        "classes": [g.to_dict() for g in classes],
        "ood": [g.to_dict() for g in ood],
    }
    _atomic_write(meta_path, lambda fh: fh.write(json.dumps(meta, ensure_ascii=False, indent=1).encode()))
    log(f"glyphs: built {did} in {time.perf_counter() - t0:.1f}s at {folder}")
    return dict(paths)


def load_split(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,S,S), labels int64 (N,)) from a cached split; clear error if bad."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"glyph split file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            images = np.asarray(z["images"])
            labels = np.asarray(z["labels"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"glyph split file {path} is corrupt or unreadable: {e}") from e
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 \
            or labels.dtype != np.int64 or len(images) != len(labels):
        raise ValueError(f"glyph split file {path} has unexpected arrays: images "
                         f"{images.dtype}{images.shape}, labels {labels.dtype}{labels.shape}")
    return images, labels
