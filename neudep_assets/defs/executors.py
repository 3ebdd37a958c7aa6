"""Where a run's steps execute (`executor:` in neudep.yaml): Dagster's multiprocess (default) or
in-process executor, or a Dask cluster through dagster-dask."""

import dagster as dg
from dagster_shared.record import copy

#: seconds to wait for an existing Dask scheduler to answer before a run fails
SCHEDULER_TIMEOUT = 5.0


class SchedulerUnreachable(ConnectionError):
    """No Dask scheduler answers at the configured address."""


def check_scheduler(address: str, timeout: float | None = None, origin: str = "executor.scheduler") -> None:
    """Connect to the Dask scheduler at ``address`` and disconnect; `SchedulerUnreachable` naming the
    address and where it came from (``origin``) when none answers within ``timeout`` seconds (default:
    :data:`SCHEDULER_TIMEOUT`, read at call time) (a closed port, an unknown host, a malformed address,
    something else listening)."""
    from distributed import Client

    timeout = SCHEDULER_TIMEOUT if timeout is None else timeout

    try:
        with Client(address, timeout=timeout, set_as_default=False):
            pass
    except Exception as exc:  # noqa: BLE001 - whatever the cause, the address is what the user must fix
        raise SchedulerUnreachable(
            f"no Dask scheduler answers at {address!r} ({origin}; waited {timeout:g} s): "
            f"{type(exc).__name__}: {exc}") from None

from neudep_assets.lib.config import ExecutorConfig


def _dask_executor_def() -> dg.ExecutorDefinition:
    from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
    from dagster_dask.executor import DaskExecutor, dask_executor

    class PoolSafeDaskExecutor(DaskExecutor):
        """dagster-dask's executor. dask ≥ 2025 walks every tuple it is given, and two optional records
        of a run refuse iteration: its op-concurrency summary (our `gpu` pool) and its partitions
        subset. They are left out of the run shipped to the workers (the steps still claim pool slots
        through the instance, and read their partition from the run's tags). An existing scheduler
        that does not answer fails the run before any step, naming its address."""

        def execute(self, plan_context, execution_plan):
            if self.cluster_type == "existing":
                check_scheduler(self.cluster_configuration["address"])
            run = plan_context.dagster_run
            drop = {k: None for k in ("run_op_concurrency", "partitions_subset") if getattr(run, k, None) is not None}
            if drop:
                plan_context._plan_data = plan_context.plan_data._replace(dagster_run=copy(run, **drop))
            return super().execute(plan_context, execution_plan)

    @dg.executor(name="dask", config_schema=dask_executor.config_schema,
                 requirements=multiple_process_executor_requirements())
    def pool_safe_dask_executor(init_context):
        ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
        return PoolSafeDaskExecutor(cluster_type, cluster_configuration)

    return pool_safe_dask_executor


def executor_for(ex: ExecutorConfig) -> dg.ExecutorDefinition:
    """`executor:` of neudep.yaml: `multiprocess` (default), `in_process`, or `dask` (an existing
    scheduler address, or a local cluster of `n_workers` started for the run)."""
    if ex.kind == "dask":
        cluster = {"existing": {"address": ex.scheduler}} if ex.scheduler else \
            {"local": {"n_workers": ex.n_workers, "threads_per_worker": 1}}
        return _dask_executor_def().configured({"cluster": cluster})
    return dg.in_process_executor if ex.kind == "in_process" else dg.multiprocess_executor
