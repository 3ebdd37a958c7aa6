"""Metadata for the Dagster UI: Markdown tables and inline PNG pictures (presentation only)."""


import base64

import dagster as dg
import pandas as pd


def md_table(df: pd.DataFrame, floatfmt: str = ".4g") -> dg.MetadataValue:
    return dg.MetadataValue.md(df.to_markdown(index=False, floatfmt=floatfmt))


def md_image(png: bytes, alt: str = "plot") -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def md_images(pngs: list[tuple[str, bytes]]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n\n".join(
        f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})" for title, png in pngs))
