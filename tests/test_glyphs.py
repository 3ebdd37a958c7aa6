"""Tests of the embedded glyph dataset (neudep_assets/lib/glyphs.py)."""
import json
import os
import unicodedata

import numpy as np
import pytest
import torch

from neudep_assets.lib import data as G
from neudep_assets.lib.data import glyph_catalog

SMALL = dict(n_classes=20, n_ood_classes=6, train_per_class=4, val_per_class=2, ood_per_class=2)


@pytest.fixture(scope="module")
def small_cfg():
    return G.GlyphConfig(**SMALL)


@pytest.fixture(scope="module")
def shipped():
    return json.loads(glyph_catalog.GLYPH_CLASSES_FILE.read_text())


# ---------------------------------------------------------------- shipped class list
def test_class_file_small_and_well_formed(shipped):
    assert glyph_catalog.GLYPH_CLASSES_FILE.stat().st_size < 200_000
    assert tuple(shipped["faces"]) == G.FACES
    cps = [r[0] for r in shipped["classes"]]
    assert len(cps) == len(set(cps)) and len(cps) >= 1000
    assert cps == sorted(cps)
    for cp, mask in shipped["classes"]:
        assert bin(mask).count("1") >= G.MIN_FACES, chr(cp)
        assert unicodedata.name(chr(cp), "")


def test_faces_exist_and_map_the_classes(shipped):
    for f in G.FACES:
        assert G.font_path(f).exists(), f
    for cp, mask in shipped["classes"][::37]:
        for i, f in enumerate(G.FACES):
            if mask >> i & 1:
                assert cp in G.face_charmap(f)


def test_near_duplicates_removed(shipped):
    cps = {r[0] for r in shipped["classes"]}
    for latin, others in [("A", "ΑА"), ("o", "οо"), ("O", "ΟО"), ("E", "ΕЕ"), ("B", "ΒВ"),
                          ("H", "ΗН"), ("p", "р"), ("x", "х")]:
        assert ord(latin) in cps
        for o in others:
            assert ord(o) not in cps, (latin, o)
    # but clearly different letters all stay
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789ΩΣЖЯ":
        assert ord(ch) in cps, ch


def test_rasterize_is_placed_and_renders_all_faces():
    for f in G.FACES:
        img = G.rasterize(f, [ord("A"), ord("g")], 64)
        assert img.shape == (2, 64, 64) and img.dtype == np.uint8
        assert img[0].max() > 200 and img[1].max() > 200
        # the same baseline: 'A' sits on it, 'g' descends below it
        rows_a = np.flatnonzero(img[0].max(1) > 64)
        rows_g = np.flatnonzero(img[1].max(1) > 64)
        assert rows_g.max() > rows_a.max() + 5


# ---------------------------------------------------------------- config & selection
def test_config_from_dict_and_errors():
    assert G.GlyphConfig.from_dict({}) == G.GlyphConfig()
    assert G.GlyphConfig.from_dict({"n_classes": 7}).n_classes == 7
    with pytest.raises(ValueError, match="n_clases"):
        G.GlyphConfig.from_dict({"n_clases": 7})
    with pytest.raises(ValueError, match="image_size"):
        G.GlyphConfig.from_dict({"image_size": "32"})
    with pytest.raises(ValueError, match="n_classes"):
        G.GlyphConfig.from_dict({"n_classes": 0})
    with pytest.raises(ValueError, match="seed"):
        G.GlyphConfig.from_dict({"seed": -1})
    with pytest.raises(ValueError, match="exceeds"):
        G.GlyphConfig.from_dict({"n_classes": 100_000})


def test_dataset_id_changes_with_params():
    base = G.GlyphConfig()
    ids = {G.dataset_id(base)}
    assert G.dataset_id(G.GlyphConfig()) == G.dataset_id(base)
    assert G.dataset_id(base).startswith("glyphs-") and len(G.dataset_id(base)) == len("glyphs-") + 12
    for k, v in dict(n_classes=301, n_ood_classes=99, image_size=28, train_per_class=61,
                     val_per_class=21, ood_per_class=6, seed=1).items():
        ids.add(G.dataset_id(G.GlyphConfig(**{k: v})))
    assert len(ids) == 8


def test_class_selection(small_cfg):
    cls = G.glyph_classes(small_cfg)
    ood = G.ood_glyphs(small_cfg)
    assert [g.index for g in cls] == list(range(20))
    assert all(g.index == -1 for g in ood) and len(ood) == 6
    assert not {g.codepoint for g in cls} & {g.codepoint for g in ood}
    assert len({g.codepoint for g in cls}) == 20
    for g in cls + ood:
        assert g.char == chr(g.codepoint) and g.name == unicodedata.name(g.char)
        assert bin(G.face_mask(g.codepoint)).count("1") >= G.MIN_FACES
    assert cls == G.glyph_classes(G.GlyphConfig(**SMALL))
    other = G.glyph_classes(G.GlyphConfig(**{**SMALL, "seed": 1}))
    assert [g.codepoint for g in other] != [g.codepoint for g in cls]


def test_default_selection_mixes_scripts():
    cfg = G.GlyphConfig()
    cls = G.glyph_classes(cfg)
    assert len(cls) == 300 and len(G.ood_glyphs(cfg)) == 100
    groups = {G.script_of(g.codepoint) for g in cls}
    assert {"LATIN", "GREEK", "CYRILLIC", "DIGIT", "PUNCTUATION", "SYMBOL-Sm"} <= groups
    cps = [g.codepoint for g in cls]
    shipped = glyph_catalog._shipped()[0]
    assert cps != list(shipped[:300])
    assert not set(cps) & {g.codepoint for g in G.ood_glyphs(cfg)}


# ---------------------------------------------------------------- renderer
@pytest.fixture(scope="module")
def renderer(small_cfg):
    return G.GlyphRenderer.for_classes(G.glyph_classes(small_cfg), small_cfg.image_size)


def test_render_shape_range_determinism(renderer):
    idx = torch.arange(20).repeat(3)
    a = renderer.render(idx, torch.Generator().manual_seed(5))
    b = renderer.render(idx, torch.Generator().manual_seed(5))
    c = renderer.render(idx, torch.Generator().manual_seed(6))
    assert a.shape == (60, 1, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # samples of one class vary (face, pose, stroke, noise)
    assert not torch.equal(a[0], a[20])
    # white glyph on dark: the centre is brighter than the border on average
    assert a[:, :, 10:22, 10:22].mean() > a[:, :, :3, :].mean()


def test_render_other_size_and_empty(small_cfg):
    r = G.GlyphRenderer.for_classes(G.glyph_classes(small_cfg)[:3], 24)
    assert r.render(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0)).shape == (3, 1, 24, 24)
    assert r.render(torch.zeros(0, dtype=torch.long), torch.Generator()).shape == (0, 1, 24, 24)
    with pytest.raises(IndexError):
        r.render(torch.tensor([3]), torch.Generator())


def test_render_uses_several_faces(renderer):
    # every class has ink in >= 6 faces of the atlas; many samples of one class differ
    assert (renderer.face_avail.sum(1) >= G.MIN_FACES).all()
    torch.manual_seed(0)
    x = renderer.render(torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(0))
    assert len({tuple((x[i, 0] > 0.5).flatten().tolist()) for i in range(64)}) > 32


def test_render_to_device_and_generator_device(renderer):
    idx = torch.tensor([0, 5, 7])
    a = renderer.render(idx, torch.Generator().manual_seed(3))
    r = renderer.to("cpu")
    assert r is renderer and r.device.type == "cpu"
    assert torch.equal(a, r.render(idx.tolist(), torch.Generator().manual_seed(3)))


# ---------------------------------------------------------------- splits & cache
def test_build_splits_and_cache(tmp_path, small_cfg):
    logs = []
    paths = G.build_splits(small_cfg, tmp_path, log=logs.append)
    folder = tmp_path / "datasets" / G.dataset_id(small_cfg)
    assert set(paths) == {"train", "val", "ood"}
    assert all(p.parent == folder for p in paths.values())
    assert (folder / "classes.json").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left
    x, y = G.load_split(paths["train"])
    assert x.shape == (80, 32, 32) and x.dtype == np.uint8
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(20))
    assert np.bincount(y).tolist() == [4] * 20
    xv, yv = G.load_split(paths["val"])
    assert xv.shape == (40, 32, 32) and not np.array_equal(xv[:40:2], x[:80:4])
    xo, yo = G.load_split(paths["ood"])
    assert xo.shape == (12, 32, 32) and (yo == -1).all()
    meta = json.loads((folder / "classes.json").read_text())
    assert [c["codepoint"] for c in meta["classes"]] == [g.codepoint for g in G.glyph_classes(small_cfg)]
    assert meta["dataset_id"] == G.dataset_id(small_cfg)

    mtimes = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}
    logs.clear()
    again = G.build_splits(small_cfg, tmp_path, log=logs.append)
    assert again == paths
    assert {k: os.stat(p).st_mtime_ns for k, p in paths.items()} == mtimes
    assert any("cached" in m for m in logs) and not any("wrote" in m for m in logs)


def test_build_splits_deterministic(tmp_path, small_cfg):
    a = G.build_splits(small_cfg, tmp_path / "a", log=lambda *_: None)
    b = G.build_splits(small_cfg, tmp_path / "b", log=lambda *_: None)
    for s in ("train", "val", "ood"):
        xa, ya = G.load_split(a[s])
        xb, yb = G.load_split(b[s])
        assert xa.tobytes() == xb.tobytes() and np.array_equal(ya, yb)
    c = G.build_splits(G.GlyphConfig(**{**SMALL, "seed": 1}), tmp_path / "c", log=lambda *_: None)
    assert G.load_split(c["train"])[0].tobytes() != G.load_split(a["train"])[0].tobytes()


def test_build_splits_resumes_missing_file(tmp_path, small_cfg):
    paths = G.build_splits(small_cfg, tmp_path, log=lambda *_: None)
    before = G.load_split(paths["val"])[0].tobytes()
    paths["val"].unlink()
    logs = []
    G.build_splits(small_cfg, tmp_path, log=logs.append)
    assert G.load_split(paths["val"])[0].tobytes() == before
    assert sum("wrote" in m for m in logs) == 1


def test_load_split_errors(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        G.load_split(missing)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="bad.npz"):
        G.load_split(bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((2, 4, 4), np.float32), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="wrong.npz"):
        G.load_split(wrong)
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, x=np.zeros(2))
    with pytest.raises(ValueError, match="nokey.npz"):
        G.load_split(nokey)
    # a truncated archive (e.g. a crash mid-copy)
    good = tmp_path / "good.npz"
    np.savez(good, images=np.zeros((50, 8, 8), np.uint8), labels=np.zeros(50, np.int64))
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="trunc.npz"):
        G.load_split(trunc)


def test_readme_example_queries_find_classes_of_the_default():
    """Every `--param target='…'` of README and the cookbook matches a class of the default config (ILIKE, as
    the queries use it), and the default holds the core alphanumerics 0–9, A–Z, a–z at every class count."""
    import re
    from dataclasses import replace
    from pathlib import Path

    import duckdb

    from neudep_assets.lib.config import load_config

    root = Path(__file__).resolve().parents[1]
    texts = [(root / "README.md").read_text()] + [p.read_text() for p in (root / "sql" / "queries").glob("*.sql")]
    patterns = {m for t in texts for m in re.findall(r"--param target='([^']+)'", t)}
    assert patterns, "README's example commands are gone"
    cfg = load_config(root / "neudep.yaml").dataset.glyphs
    names = [g.name for g in G.glyph_classes(cfg)]
    con = duckdb.connect()
    for pat in patterns:
        hits = con.execute("SELECT count(*) FROM unnest($names) AS t(name) WHERE name ILIKE $p",
                           {"names": names, "p": pat}).fetchone()[0]
        assert hits >= 1, f"README's target={pat!r} matches no class of the default"
    for n in (62, 100, 300, 1000, 2000):
        chars = {g.char for g in G.glyph_classes(replace(cfg, n_classes=n))}
        assert set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") <= chars, n
