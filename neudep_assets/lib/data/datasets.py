"""One interface over the two dataset kinds: the embedded glyphs and a user's ImageFolder splits."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neudep_assets.lib.data import glyph_catalog, glyph_renderer
from neudep_assets.lib.config import DatasetConfig, stable_hash

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the folder or file."""


@dataclass(frozen=True)
class PreparedDataset:
    dataset_id: str
    kind: str
    class_names: tuple[str, ...]
    class_labels: tuple[str, ...]  # short label for plots (the glyph itself, or the folder name)
    splits: dict[str, str]  # split -> npz file (glyphs) or folder (imagefolder)
    counts: dict[str, int] = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict:
        return {"dataset_id": self.dataset_id, "kind": self.kind, "class_names": list(self.class_names),
                "class_labels": list(self.class_labels), "splits": self.splits, "counts": self.counts,
                "params": self.params}

    @classmethod
    def from_json(cls, d: dict) -> "PreparedDataset":
        return cls(dataset_id=d["dataset_id"], kind=d["kind"], class_names=tuple(d["class_names"]),
                   class_labels=tuple(d["class_labels"]), splits=dict(d["splits"]), counts=dict(d["counts"]),
                   params=dict(d.get("params", {})))


def prepare_dataset(cfg: DatasetConfig, root: Path, log=print) -> PreparedDataset:
    """Render (or find cached) glyph splits, or index the ImageFolder splits."""
    if cfg.kind == "glyphs":
        paths = glyph_renderer.build_splits(cfg.glyphs, root, log=log)
        classes = glyph_catalog.glyph_classes(cfg.glyphs)
        counts = {split: int(len(glyph_renderer.load_split(Path(p))[1])) for split, p in paths.items()}
        return PreparedDataset(
            dataset_id=glyph_catalog.dataset_id(cfg.glyphs), kind="glyphs",
            class_names=tuple(f"{c.char} {c.name.lower()}" for c in classes),
            class_labels=tuple(c.char for c in classes),
            splits={k: str(v) for k, v in paths.items()}, counts=counts,
            params={"glyphs": cfg.glyphs.__dict__},
        )
    return _index_imagefolder(cfg)


def dataset_id_of(cfg: DatasetConfig) -> str:
    """The id `prepare_dataset` gives `cfg`'s dataset, without rendering or loading any image (glyphs:
    from the config; ImageFolder: from its file list, sizes and times): what tells a changed dataset."""
    if cfg.kind == "glyphs":
        return glyph_catalog.dataset_id(cfg.glyphs)
    return _index_imagefolder(cfg).dataset_id


#: ImageFolder datasets up to this many bytes are identified by their files' content too (sha256).
CONTENT_HASH_MAX_BYTES = 64 << 20


def _utf8(path: Path, root: Path, what: str, split: str) -> str:
    """`path` relative to `root`, refused (naming it) when its name is not valid UTF-8."""
    rel = str(path.relative_to(root))
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(f"dataset split {split!r}: {what} name is not valid UTF-8: "
                           f"{os.fsencode(path)!r}; rename it") from None
    return rel


def _split_files(split: str, root: Path) -> tuple[list[str], list[tuple[str, os.stat_result, Path]]]:
    """Class folders and image files of one split, walking without following links: a symlinked folder,
    or a file that resolves out of the split's tree, is refused (the logits would read what the dataset
    id does not cover)."""
    real = root.resolve()
    classes, files = [], []
    for d in sorted(root.iterdir()):
        if d.is_symlink() and d.is_dir():
            raise DatasetError(f"dataset split {split!r}: class folder {d} is a symlink (to {d.resolve()}); "
                               "copy the images into the dataset tree")
        if d.is_dir():
            classes.append(_utf8(d, root, "class folder", split))
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink():
                raise DatasetError(f"dataset split {split!r}: folder {here / name} is a symlink (to "
                                   f"{(here / name).resolve()}); copy the images into the dataset tree")
        for name in filenames:
            p = here / name
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if p.is_symlink() and not p.resolve().is_relative_to(real):
                raise DatasetError(f"dataset split {split!r}: image {p} is a symlink out of the dataset tree "
                                   f"(to {p.resolve()})")
            files.append((_utf8(p, root, "image file", split), p.stat(), p))
    return classes, sorted(files, key=lambda f: f[0])


def _index_imagefolder(cfg: DatasetConfig) -> PreparedDataset:
    """Class folders and counts of each split; the dataset id covers every image's relative path, size
    and modification time (and content, up to CONTENT_HASH_MAX_BYTES in all), so changed, added or
    removed images give another id (and new logits downstream)."""
    listing = hashlib.sha256()
    counts, classes, per_split = {}, None, {}
    for split, folder in sorted(cfg.splits.items()):
        root = Path(folder)
        if not root.is_dir():
            raise DatasetError(f"dataset split {split!r}: folder not found: {root}")
        split_classes, files = _split_files(split, root)
        if not files:
            raise DatasetError(f"dataset split {split!r}: no images under {root}")
        if split != "ood":
            if classes is not None and split_classes != classes:
                raise DatasetError(f"dataset split {split!r} ({root}) has other class folders than the train split")
            classes = split_classes
        counts[split] = len(files)
        per_split[split] = files
    hash_content = sum(st.st_size for files in per_split.values() for _, st, _ in files) <= CONTENT_HASH_MAX_BYTES
    for split, files in per_split.items():
        for rel, st, path in files:
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if hash_content else ""
            listing.update(f"{split}/{rel}:{st.st_size}:{st.st_mtime_ns}:{digest}\n".encode())
    names = _readable_class_names(classes)
    return PreparedDataset(
        dataset_id=f"{cfg.name}-{stable_hash({'splits': cfg.splits, 'files': listing.hexdigest()}, 12)}",
        kind="imagefolder", class_names=tuple(names), class_labels=tuple(classes), splits=dict(cfg.splits),
        counts=counts, params={"name": cfg.name, "splits": cfg.splits},
    )


def _readable_class_names(folders: list[str]) -> list[str]:
    """ImageNet synset folders (n01440764) get timm's descriptions; other folder names stay as they are."""
    if folders and all(len(f) == 9 and f[0] == "n" and f[1:].isdigit() for f in folders):
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            return [info.label_name_to_description(f) for f in folders]
        except Exception:  # unknown synsets: keep folder names
            pass
    return list(folders)


def load_images(ds: PreparedDataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and sample ids of a glyph split."""
    if split not in ds.splits:
        raise DatasetError(f"dataset {ds.dataset_id} has no split {split!r} (has {sorted(ds.splits)})")
    images, labels = glyph_renderer.load_split(Path(ds.splits[split]))
    ids = np.array([f"{split}/{i}" for i in range(len(labels))])
    return images, labels, ids


def class_examples(ds: PreparedDataset, split: str = "val") -> dict[int, np.ndarray]:
    """One example image per class (for star pictures); empty for ImageFolder datasets."""
    if ds.kind != "glyphs":
        return {}
    images, labels, _ = load_images(ds, split)
    first: dict[int, np.ndarray] = {}
    for i, y in enumerate(labels):
        if y >= 0 and int(y) not in first:
            first[int(y)] = images[i]
    return first
