"""The dataset asset: the embedded glyphs (rendered once, cached by dataset id) or ImageFolder splits."""


import json

import dagster as dg
import pandas as pd

from neudep_assets.defs.report import md_table
from neudep_assets.defs.resources import Neudep
from neudep_assets.defs.store_keys import present, store_keys
from neudep_assets.lib.code_version import code_version
from neudep_assets.lib.data import prepare_dataset

DATASET_SCIENCE = ("neudep_assets.lib.data",)
DATASET_CODE_VERSION = code_version(*DATASET_SCIENCE)


@dg.asset(code_version=DATASET_CODE_VERSION, group_name="data", kinds={"numpy"},
          automation_condition=(dg.AutomationCondition.missing() & ~dg.AutomationCondition.in_progress()
                                & ~dg.AutomationCondition.execution_failed()).with_label("when missing"))
def dataset(context: dg.AssetExecutionContext, neudep: Neudep) -> dg.Output[dict]:
    """The image dataset of the project config: splits train / val / ood and class names.

    The default is the glyph dataset rendered offline from matplotlib's fonts (one class per
    character); an ImageFolder dataset is indexed instead (its id covers every image's path, size and
    time, so changed images make it and everything downstream stale). Cached by its dataset id.
    """
    project, store = neudep.project(), neudep.store()
    ds = prepare_dataset(project.dataset, store.root, log=context.log.info)
    if not present(store, "classes", ds.dataset_id):  # each table on its own: one may be lost without the other
        store.write("classes", ds.dataset_id,
                    [{"dataset_id": ds.dataset_id, "class_index": i, "name": n, "label": lab}
                     for i, (n, lab) in enumerate(zip(ds.class_names, ds.class_labels))],
                    run_id=context.run.run_id, code_version=DATASET_CODE_VERSION)
    if not present(store, "datasets", ds.dataset_id):
        store.write("datasets", ds.dataset_id,
                    [{"dataset_id": ds.dataset_id, "kind": ds.kind, "n_classes": ds.n_classes,
                      "n_train": ds.counts.get("train"), "n_val": ds.counts.get("val"),
                      "n_ood": ds.counts.get("ood"), "params_json": json.dumps(ds.params, default=str)}],
                    run_id=context.run.run_id, code_version=DATASET_CODE_VERSION)
    examples = pd.DataFrame({"class": range(min(12, ds.n_classes)), "name": ds.class_names[:12]})
    return dg.Output(
        ds.to_json(), data_version=dg.DataVersion(ds.dataset_id),
        metadata={"dataset_id": ds.dataset_id, "kind": ds.kind, "n_classes": ds.n_classes,
                  "samples": md_table(pd.DataFrame([ds.counts])), "first_classes": md_table(examples),
                  **store_keys(tables=[("classes", ds.dataset_id), ("datasets", ds.dataset_id)])},
    )
