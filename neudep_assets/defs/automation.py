"""Automation: downstream assets follow their inputs by Dagster's automation conditions.

The model registry sensor launches a model's checkpoint run (new or changed weights); from there
Dagster's automation condition sensor materializes what reads it (logits → moments → dependencies,
the pairs that involve the model, comparisons), each when its inputs have updated. Dagster's records
do not see a result lost from the store, nor an ImageFolder's changed images: the `store_watch` sensor
(defs/sensors.py) asks the store and the dataset, and launches the first run that recomputes them; what
reads it follows by these conditions. The schedules (`schedule:` in neudep.yaml, defs/jobs.py) rerun
whatever is missing (in Dagster's records or in the store), failed or stale.
"""

import dagster as dg

AC = dg.AutomationCondition

#: Dagster's `eager`: run when an input updated (or the partition is new), not while an input is
#: missing or running.
FOLLOW_INPUTS = AC.eager()

#: A checkpoint follows the dataset; new and changed checkpoints are launched by the model registry
#: sensor (whose run key holds the weights' sha256), so `newly_missing` is left to it.
CHECKPOINT_CONDITION = (
    AC.any_deps_updated().since_last_handled() & ~AC.any_deps_missing() & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("follow the dataset")

#: The comparisons read every model and pair present: run when any of them updated, even while some
#: partition (a model dropped long ago, a pair not run yet) is missing.
COMPARISONS_CONDITION = (
    AC.any_deps_updated().since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()
).with_label("follow any model or pair")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "neudep_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the automation conditions of every neudep asset (on when `make ui` starts).")
