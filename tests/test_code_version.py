"""Code versions follow the code: a changed lib/ source changes the code version (and so the
content-addressed keys) of the assets whose science imports it, and only those."""

import shutil

import pytest

from neudep_assets.defs.comparison_assets import COMPARISONS_SCIENCE
from neudep_assets.defs.dataset_assets import DATASET_SCIENCE
from neudep_assets.defs.dependency_assets import DEPENDENCIES_SCIENCE
from neudep_assets.defs.model_assets import CHECKPOINT_SCIENCE, LOGITS_SCIENCE, MOMENTS_SCIENCE
from neudep_assets.defs.uses_assets import INCREMENTAL_SCIENCE, REGULARIZED_SCIENCE, REPORT_SCIENCE
from neudep_assets.lib.code_version import LIB, closure, code_version

SCIENCE = {"dataset": DATASET_SCIENCE, "checkpoint": CHECKPOINT_SCIENCE, "logits": LOGITS_SCIENCE,
           "moments": MOMENTS_SCIENCE, "dependencies": DEPENDENCIES_SCIENCE,
           "between_dependencies": DEPENDENCIES_SCIENCE, "comparisons": COMPARISONS_SCIENCE,
           "incremental_heads": INCREMENTAL_SCIENCE, "regularized_checkpoints": REGULARIZED_SCIENCE,
           "regularization_report": REPORT_SCIENCE}
USES = {"incremental_heads", "regularized_checkpoints"}  # §3.2 / §3.3: they train (models/finetune.py)


def _versions(root):
    return {asset: code_version(*mods, root=root) for asset, mods in SCIENCE.items()}


def test_assets_carry_the_code_version_of_their_science():
    from neudep_assets.definitions import defs

    import dagster as dg

    graph = defs.resolve_asset_graph()
    for asset, version in _versions(LIB).items():
        # the science hash, then (issue 10) a hash of the part of neudep.yaml the asset reads, if any
        science, *config = graph.get(dg.AssetKey(asset)).code_version.split("-", 1)
        assert science == version, asset
        assert bool(config) == (asset not in ("logits", "comparisons")), asset


@pytest.mark.parametrize("changed, stale", [
    ("covlasso/solver.py", {"dependencies", "between_dependencies"}),
    ("analysis/moments.py", {"logits", "moments", "dependencies", "between_dependencies"}),
    ("analysis/comparisons.py", {"comparisons"}),
    ("analysis/offsets.py", {"logits", "dependencies", "between_dependencies"}),  # diagnostics, gauges
    ("analysis/problem.py", {"dependencies", "between_dependencies"}),  # the analysis the API runs too
    ("models/training.py", {"checkpoint", "logits"} | USES),
    ("data/glyph_renderer.py", {"dataset", "checkpoint", "logits"} | USES),
    ("models/finetune.py", USES),
    ("analysis/incremental.py", {"incremental_heads"}),
    ("analysis/regularization.py", {"regularized_checkpoints", "regularization_report"}),
    ("report/plots.py", set()),  # pictures only: no result changes
    ("store.py", set()),  # infrastructure: a new store table must not retrain a model
])
def test_a_changed_lib_source_marks_exactly_its_dependents_stale(tmp_path, changed, stale):
    lib = tmp_path / "lib"
    shutil.copytree(LIB, lib, ignore=shutil.ignore_patterns("__pycache__"))
    before = _versions(lib)
    assert before == _versions(LIB)  # the copy hashes like the original: versions are of the source only
    with (lib / changed).open("a") as fh:
        fh.write("\n# a change to the maths\n")
    after = _versions(lib)
    assert {a for a in after if after[a] != before[a]} == stale


def test_closure_follows_function_level_imports(toy_package):
    pkg = toy_package({"a": "def f():\n    from toy.b import g\n", "b": "from . import c\n", "c": "x = 1\n",
                       "d": "y = 2\n"})
    assert closure("toy.a", root=pkg, pkg="toy") == ["toy.a", "toy.b", "toy.c"]
    v = code_version("toy.a", root=pkg, pkg="toy")
    (pkg / "d.py").write_text("y = 3\n")  # not imported by toy.a
    assert code_version("toy.a", root=pkg, pkg="toy") == v
    (pkg / "c.py").write_text("x = 2\n")  # imported through a function-level import and a relative one
    assert code_version("toy.a", root=pkg, pkg="toy") != v
