"""Glyph images: a batched torch renderer with random faces, sizes, rotations, strokes and noise, and
the train / val / ood splits it renders once and caches (white glyph on a dark background)."""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

from neudep_assets.lib.config import SPLITS
from neudep_assets.lib.data.glyph_catalog import (FACES, RENDERER_VERSION, GlyphClass, face_mask, glyph_classes,
                                                   ood_glyphs, dataset_id, rasterize)
from neudep_assets.lib.specs import GlyphConfig
from neudep_assets.lib.store import atomic_write

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
        atomic_write(paths[split], lambda fh: np.savez(fh, images=images, labels=lab))
        log(f"glyphs: wrote {paths[split]} ({len(lab)} images)")
    meta = {
        "dataset_id": did,
        "config": cfg.to_dict(),
        "renderer_version": RENDERER_VERSION,
        "image_layout": "white glyph on dark background, uint8",
        "classes": [g.to_dict() for g in classes],
        "ood": [g.to_dict() for g in ood],
    }
    atomic_write(meta_path, lambda fh: fh.write(json.dumps(meta, ensure_ascii=False, indent=1).encode()))
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
