"""Datasets: the embedded glyph classes and renderer, ImageFolder splits, prepared datasets."""

from neudep_assets.lib.data.datasets import (IMAGE_EXTENSIONS, DatasetError, PreparedDataset, class_examples,
                                             load_images, prepare_dataset)
from neudep_assets.lib.data.glyph_catalog import (FACES, MIN_FACES, GlyphClass, dataset_id, face_charmap, face_mask,
                                                  font_path, glyph_classes, ood_glyphs, rasterize, script_of)
from neudep_assets.lib.data.glyph_renderer import GlyphRenderer, build_splits, load_split, render_split
from neudep_assets.lib.specs import GlyphConfig

__all__ = ["IMAGE_EXTENSIONS", "DatasetError", "PreparedDataset", "class_examples", "load_images", "prepare_dataset",
           "FACES", "MIN_FACES", "GlyphClass", "dataset_id", "face_charmap", "face_mask", "font_path", "glyph_classes",
           "ood_glyphs", "rasterize", "script_of", "GlyphRenderer", "build_splits", "load_split", "render_split",
           "GlyphConfig"]
