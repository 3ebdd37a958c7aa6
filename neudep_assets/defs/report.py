"""Metadata for the Dagster UI: Markdown tables and pictures (presentation only).

A picture is saved whole as a store file (its path in the metadata) and shown inline as a compact
palette PNG of a few KB: the event log keeps every materialization's metadata (twice with the default
SQLite storage: the run's own log and the asset index), so full-size base64 pictures made it grow by
hundreds of KB per materialization. Assets hand pictures to `context.add_asset_metadata`, which lands
on the materialization only (an Output's metadata is also copied into its STEP_OUTPUT event)."""


import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from neudep_assets.lib.report.plots import compact_png
from neudep_assets.lib.store import ResultStore


def md_table(df: pd.DataFrame, floatfmt: str = ".4g") -> dg.MetadataValue:
    return dg.MetadataValue.md(df.to_markdown(index=False, floatfmt=floatfmt))


def mean_std(df: pd.DataFrame, cols: dict[str, str], *, digits: int = 1) -> pd.DataFrame:
    """Columns `col` and `col_std` as one text column 'mean ± std' (no-break spaces: a cell does not
    wrap), named by `cols` (column -> title, which carries the unit); a missing value is '–'."""
    out = pd.DataFrame(index=df.index)
    for col, title in cols.items():
        out[title] = [("–" if pd.isna(m) else f"{m:.{digits}f}\u00a0±\u00a0{0.0 if pd.isna(s) else s:.{digits}f}")
                      for m, s in zip(df[col], df[f"{col}_std"])]
    return out


def _inline(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(compact_png(png)).decode()})"


def picture(path: Path, alt: str) -> dict[str, dg.MetadataValue]:
    """Metadata of one picture file: `<stem>` inline (compact) and `<stem>_file` (the full-size PNG)."""
    return {path.stem: dg.MetadataValue.md(_inline(path.read_bytes(), alt)),
            f"{path.stem}_file": dg.MetadataValue.path(str(path))}


def _save(store: ResultStore, key: str, name: str, png: bytes) -> Path:
    """The picture's file, written once: `key` is a content address (an analysis, a result), so a rerun
    that finds its result leaves the file as it is."""
    path = store.artifacts_dir / "plots" / key / f"{name}.png"  # where store.save_png puts it
    return path if path.is_file() else store.save_png(key, name, png)


def pictures(store: ResultStore, key: str, pngs: dict[str, tuple[str, bytes]]) -> dict[str, dg.MetadataValue]:
    """Save each picture (name -> (alt text, PNG)) as artifacts/plots/<key>/<name>.png; its metadata."""
    out = {}
    for name, (alt, png) in pngs.items():
        out.update(picture(_save(store, key, name, png), alt))
    return out


def picture_list(store: ResultStore, key: str, name: str, pngs: list[tuple[str, bytes]]) -> dict[str, dg.MetadataValue]:
    """Several titled pictures in one Markdown entry `name`, saved as <name>_<i>.png; `<name>_files`: their folder."""
    paths = [_save(store, key, f"{name}_{i}", png) for i, (_, png) in enumerate(pngs)]
    md = "\n\n".join(f"**{title}**\n\n{_inline(png, title)}" for title, png in pngs)
    return {name: dg.MetadataValue.md(md or "none"),
            **({f"{name}_files": dg.MetadataValue.path(str(paths[0].parent))} if paths else {})}
