#!/usr/bin/env python
"""Compute the shipped glyph class list: neudep_assets/lib/data/glyph_classes.json.

Dev script, not on the runtime path (takes a while). Steps:
1. candidates: letters (Lu/Ll/Lt/Lo), numbers (Nd/No/Nl), symbols (S*) and punctuation (P*) in the
   charmaps of the 16 Unicode faces matplotlib ships (glyphs.FACES); Braille, box drawing, block
   elements and private-use code points are left out (they differ only by position in the cell);
2. a character counts as renderable in a face if the face maps it and the rendering has ink; keep
   characters renderable in >= MIN_FACES faces;
3. near-identical characters are removed: every candidate is rendered in each of its faces with the
   renderer's own layout (glyphs.rasterize) at REF_SIZE px; for two characters the distance is the
   mean over their common faces of ||a - b||^2 / mean(||a||^2, ||b||^2); walking the candidates in
   priority order (Latin-1, then basic Greek and Cyrillic, then everything else; code-point order
   within each tier), a character is kept unless it is within THRESHOLD of an already kept one (so
   Latin A stays and Greek Alpha / Cyrillic A go; Greek Sigma stays and Latin Esh goes).

Output: {"faces": [...], "classes": [[codepoint, face bitmask], ...]} in code-point order.
Usage: python scripts/make_glyph_classes.py [--out PATH] [--threshold T] [--report]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from neudep_assets.lib import data as G  # noqa: E402
from neudep_assets.lib.specs import GLYPH_CLASSES_FILE  # noqa: E402

REF_SIZE = 32
THRESHOLD = 0.10
MIN_COMMON = 2
CATEGORIES = {"Lu", "Ll", "Lt", "Lo", "Nd", "No", "Nl", "Sm", "Sc", "Sk", "So",
              "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"}
EXCLUDED_RANGES = [(0x2500, 0x259F),   # box drawing, block elements
                   (0x2800, 0x28FF),   # braille
                   (0xE000, 0xF8FF),   # private use
                   (0xFFF0, 0xFFFF),   # specials (replacement character)
                   (0xF0000, 0x10FFFF)]


def candidates() -> list[int]:
    cps = set()
    for f in G.FACES:
        cps |= G.face_charmap(f)
    out = []
    for cp in sorted(cps):
        if cp < 0x21 or any(a <= cp <= b for a, b in EXCLUDED_RANGES):
            continue
        ch = chr(cp)
        if unicodedata.category(ch) not in CATEGORIES or not unicodedata.name(ch, ""):
            continue
        out.append(cp)
    return out


def priority(cp: int) -> tuple[int, int]:
    if cp <= 0xFF:
        return (0, cp)
    if 0x370 <= cp <= 0x3FF or 0x400 <= cp <= 0x45F:
        return (1, cp)
    return (2, cp)


def render_all(cps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, F, REF, REF) float32 renderings and (N, F) bool renderable."""
    n = len(cps)
    imgs = np.zeros((n, len(G.FACES), REF_SIZE, REF_SIZE), np.float32)
    ok = np.zeros((n, len(G.FACES)), bool)
    for fi, face in enumerate(G.FACES):
        cmap = G.face_charmap(face)
        rows = [i for i, cp in enumerate(cps) if cp in cmap]
        big = G.rasterize(face, [cps[i] for i in rows], 2 * REF_SIZE)
        # a glyph that is the face's .notdef box or empty is not renderable
        small = F.avg_pool2d(torch.from_numpy(big).float().unsqueeze(1) / 255.0, 2)[:, 0].numpy()
        ink = small.reshape(len(rows), -1).sum(1) > 1.0
        imgs[rows, fi] = small
        ok[rows, fi] = ink
    return imgs, ok


def distances(imgs: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, nf = ok.shape
    num = torch.zeros(n, n, dtype=torch.float64)
    cnt = torch.zeros(n, n, dtype=torch.float64)
    for fi in range(nf):
        m = torch.from_numpy(ok[:, fi])
        idx = torch.nonzero(m).flatten()
        X = torch.from_numpy(imgs[idx.numpy(), fi].reshape(len(idx), -1)).double()
        sq = (X * X).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2 * X @ X.T).clamp_min(0)
        rel = d2 / (0.5 * (sq[:, None] + sq[None, :])).clamp_min(1e-6)
        num[idx[:, None], idx[None, :]] += rel
        cnt[idx[:, None], idx[None, :]] += 1
    D = torch.where(cnt > 0, num / cnt.clamp_min(1), torch.full_like(num, np.inf))
    return D.numpy(), cnt.numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=GLYPH_CLASSES_FILE)
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--report", action="store_true", help="print the removed characters")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    cps = candidates()
    imgs, ok = render_all(cps)
    keep = ok.sum(1) >= G.MIN_FACES
    cps = [cp for cp, k in zip(cps, keep) if k]
    imgs, ok = imgs[keep], ok[keep]
    print(f"{len(cps)} candidates renderable in >= {G.MIN_FACES} faces "
          f"({time.perf_counter() - t0:.1f}s)")
    D, cnt = distances(imgs, ok)
    near = (D < a.threshold) & (cnt >= MIN_COMMON)
    kept: list[int] = []
    removed = []
    for i in sorted(range(len(cps)), key=lambda i: priority(cps[i])):
        hit = [j for j in kept if near[i, j]]
        if hit:
            removed.append((i, hit[0]))
        else:
            kept.append(i)
    if a.report:
        for i, j in removed:
            print(f"drop {chr(cps[i])} U+{cps[i]:04X} {unicodedata.name(chr(cps[i]))}  ~  "
                  f"{chr(cps[j])} U+{cps[j]:04X} (d={D[i, j]:.3f})")
    kept.sort()
    rows = [[cps[i], int(sum(1 << f for f in range(len(G.FACES)) if ok[i, f]))] for i in kept]
    data = {
        "about": "glyph classes for neudep: code points renderable in >= %d of the faces, "
                 "near-identical renderings removed; mask bit i = faces[i]. "
                 "Made by scripts/make_glyph_classes.py" % G.MIN_FACES,
        "ref_size": REF_SIZE, "threshold": a.threshold, "min_faces": G.MIN_FACES,
        "faces": list(G.FACES),
        "classes": rows,
    }
    text = json.dumps(data, separators=(",", ":"))
    # one class per line keeps diffs readable
    text = text.replace("],[", "],\n[")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")
    print(f"kept {len(kept)}, removed {len(removed)} near-duplicates -> {a.out} "
          f"({a.out.stat().st_size / 1024:.0f} KB, {time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
