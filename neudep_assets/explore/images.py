"""One small picture per class for the explorer: a glyph render, or a thumbnail of an ImageFolder image.

Made in memory on first request and kept in a bounded cache (nothing is written anywhere); the browser
gets a PNG of at most THUMB × THUMB pixels, never a full image."""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

THUMB = 64


class ClassImages:
    """Class pictures of the dataset the data root's pipeline prepared (pointers/dataset.json)."""

    def __init__(self, data_root: Path):
        self.pointer = Path(data_root) / "pointers" / "dataset.json"
        self.png = lru_cache(maxsize=4096)(self._png)
        self._examples: tuple[str, dict] = ("", {})

    def dataset(self):
        from neudep_assets.lib.data import PreparedDataset

        if not self.pointer.is_file():
            return None
        return PreparedDataset.from_json(json.loads(self.pointer.read_text()))

    def _png(self, dataset_id: str, class_index: int) -> bytes | None:
        """PNG bytes of class `class_index`, or None when the data root holds another dataset or no image."""
        ds = self.dataset()
        if ds is None or ds.dataset_id != dataset_id or not 0 <= class_index < ds.n_classes:
            return None
        if ds.kind == "glyphs":
            if self._examples[0] != dataset_id:
                from neudep_assets.lib.data import class_examples

                self._examples = (dataset_id, class_examples(ds))
            img = self._examples[1].get(class_index)
            return None if img is None else _to_png(_gray(img))
        return _folder_thumb(Path(ds.splits.get("val") or ds.splits.get("train")) / ds.class_labels[class_index])


def _gray(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=0 if a.shape[0] in (1, 3) else -1)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return (255 * (1 - a)).astype(np.uint8)  # glyphs are white on black: draw them dark on light


def _to_png(a: np.ndarray) -> bytes:
    from PIL import Image

    im = Image.fromarray(a)
    im = im.resize((THUMB, THUMB), Image.NEAREST) if max(im.size) < THUMB else im
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _folder_thumb(folder: Path) -> bytes | None:
    """The first image of a class folder, shrunk to a thumbnail (links out of the folder are not followed)."""
    from PIL import Image

    from neudep_assets.lib.data import IMAGE_EXTENSIONS

    if not folder.is_dir() or folder.is_symlink():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_symlink())
    if not files:
        return None
    with Image.open(files[0]) as im:
        im = im.convert("RGB")
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()
