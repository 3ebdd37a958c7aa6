"""The model registry sensor: neudep.yaml's models become partitions; changed checkpoints rerun."""


import json
from pathlib import Path

import dagster as dg

from neudep_assets.defs.jobs import model_job
from neudep_assets.defs.partitions import missing_partitions, models_partitions, pairs_partitions
from neudep_assets.defs.resources import Neudep


@dg.sensor(job=model_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def model_registry(context: dg.SensorEvaluationContext, neudep: Neudep) -> dg.SensorResult:
    """Adds the config's models and model pairs as partitions, and requests a model run whenever a
    local checkpoint file (`checkpoint:` in neudep.yaml) appears or changes."""
    project = neudep.project()
    new_models, new_pairs = missing_partitions(project, context.instance)
    cursor = json.loads(context.cursor or "{}")
    runs = []
    for spec in project.models:
        weights = Path(spec.checkpoint or "") / "model.safetensors"
        if spec.checkpoint and weights.is_file():
            st = weights.stat()
            stamp = f"{st.st_mtime_ns}-{st.st_size}"
            if cursor.get(spec.name) != stamp:
                cursor[spec.name] = stamp
                runs.append(dg.RunRequest(run_key=f"{spec.name}-{stamp}", partition_key=spec.name))
    requests = []
    if new_models:
        requests.append(models_partitions.build_add_request(new_models))
    if new_pairs:
        requests.append(pairs_partitions.build_add_request(new_pairs))
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(cursor), dynamic_partitions_requests=requests)
