"""The shipped glyph class list (code points and the faces each renders in), made offline by
scripts/make_glyph_classes.py."""

from __future__ import annotations

import functools
import json
from pathlib import Path

GLYPH_CLASSES_FILE = Path(__file__).resolve().parent / "data" / "glyph_classes.json"


@functools.lru_cache(maxsize=1)
def shipped_glyph_list() -> bytes:
    """The raw bytes of the shipped glyph class list (also hashed into the dataset id)."""
    try:
        return GLYPH_CLASSES_FILE.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"glyph class list {GLYPH_CLASSES_FILE} is missing; run "
                                f"scripts/make_glyph_classes.py") from e


@functools.lru_cache(maxsize=1)
def glyph_count() -> int:
    """The number of characters in the shipped glyph class list."""
    return len(json.loads(shipped_glyph_list())["classes"])
