"""docs/configuration.md lists every key of the schema, with the types, bounds and defaults the schema has."""

from pathlib import Path

from neudep_assets.lib.config_doc import BEGIN, END, reference, sections, with_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_doc_is_the_schema():
    text = DOC.read_text()
    assert text == with_reference(text), "run: python -m neudep_assets.lib.config_doc"


def test_every_schema_key_is_in_the_doc_under_its_section():
    keys = DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    blocks = {b.split("\n", 1)[0].strip(): b for b in keys.split("### ")[1:]}
    n = 0
    for path, schema in sections():
        block = blocks[f"`{path}`" if path else "top level"]
        for name in schema.model_fields:
            assert f"| `{name}` |" in block, (path, name)
            n += 1
    assert n >= 70  # the project's config has that many keys


def test_the_reference_can_tell_a_missing_key():
    """The check above fails on a doc that lacks a key."""
    doc = DOC.read_text()
    assert "| `val_per_class` |" in reference()
    broken = doc.replace("| `val_per_class` |", "| `val_per_clas` |")
    assert broken != doc and with_reference(broken) == doc
