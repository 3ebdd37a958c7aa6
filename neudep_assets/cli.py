"""`neudep` command line: run the default pipeline, query the result store, export results."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from neudep_assets.lib.config import config_path, data_root

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def _dagster_home() -> Path:
    """The persistent Dagster home under the data root, shared by `make demo` and `make ui`."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_root() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class PipelineError(RuntimeError):
    """A pipeline step failed; the message carries the step's own error."""


def run_pipeline(config: Path | None = None, root: Path | None = None, *, instance=None, log=print,
                 executor: str | None = None, logits_batch_size: int | None = None) -> list[tuple]:
    """Bring the whole graph for the config up to date: dataset, every model (config and watched
    folders), every ordered pair, comparisons. Only the runs whose assets Dagster says are missing
    or stale are launched (a rerun that changes nothing launches nothing); returns what ran.

    `executor` (default: the config's `executor.kind`): `dask` executes each run's steps on a Dask
    cluster (dagster-dask), anything else in this process. ``logits_batch_size`` overrides every
    model's (default: each entry's, else fitted to input and memory)."""
    import dagster as dg

    from neudep_assets.defs.jobs import changed_checkpoints, plan, store_missing, uses_steps
    from neudep_assets.defs.partitions import record_uncomputed_pairs, register, use_models
    from neudep_assets.definitions import build_defs
    from neudep_assets.lib.config import load_config
    from neudep_assets.lib.models import CheckpointError
    from neudep_assets.lib.models.watch import convert_pickle

    config, root = (Path(config).resolve() if config else config_path()), (Path(root).resolve() if root else data_root())
    defs = build_defs(str(config), str(root))
    project = load_config(config)
    executor = executor or project.executor.kind
    if instance is None:
        _dagster_home()
        instance = dg.DagsterInstance.get()
    if logits_batch_size is not None and (isinstance(logits_batch_size, bool) or logits_batch_size < 1):
        raise ValueError(f"--logits-batch-size must be a positive integer, got {logits_batch_size!r}")
    neudep = defs.resources["neudep"]
    neudep.store().verify(write=True)  # an unreachable store root fails here, before any work
    watched, refused = neudep.watched(project)
    for w in [w for w in watched if w.is_pickle]:
        try:
            convert_pickle(w, root)
        except CheckpointError as exc:
            refused.append((w.folder, str(exc)))
    for folder, reason in refused:
        log(f"[neudep] refused: {reason}")
    bad = {folder for folder, _ in refused}
    names = [m.name for m in project.models] + [w.name for w in watched if w.folder not in bad]
    register(names, instance, use_models(project))  # the uses' own partitions: the models they apply to
    quiet = {"loggers": {"console": {"config": {"log_level": os.environ.get("NEUDEP_LOG_LEVEL", "INFO")}}}}
    graph, done = defs.resolve_asset_graph(), []
    changed = changed_checkpoints(neudep, instance, names)

    def run(job_name: str, partition, assets: list[str]) -> None:
        label = f"{job_name}{f' [{partition}]' if partition else ''} ({', '.join(assets)})"
        t0 = time.perf_counter()
        log(f"[neudep] {label} ...")
        selection = [dg.AssetKey(a) for a in assets]
        run_config = quiet
        if logits_batch_size and "logits" in assets:
            run_config = {**quiet, "ops": {"logits": {"config": {"batch_size": int(logits_batch_size)}}}}
        if executor == "dask":
            result = _execute_out_of_process(job_name, config, root, instance, partition, selection, run_config)
        else:
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance, partition_key=partition, run_config=run_config, raise_on_error=False,
                asset_selection=selection)
        if not result.success:
            errors = [f"  {e.step_key}: {_root_cause(e.step_failure_data.error)}"
                      for e in result.get_step_failure_events() if e.step_failure_data.error]
            raise PipelineError(f"{label} failed (run {result.run_id}):\n"
                                + "\n".join(errors or ["  see the log above or `make ui`"]))
        done.append((job_name, partition, assets))
        log(f"[neudep] {label} done in {time.perf_counter() - t0:.1f}s")

    def missing() -> dict:
        """What the store lacks of what Dagster records as materialized (the store decides), logged;
        asked again only after a run."""
        if memo and memo[0] == len(done):
            return memo[1]
        gone = store_missing(neudep, instance, names)
        memo[:] = [len(done), gone]
        for partition, assets in gone.items():
            for asset, what in assets.items():
                line = (f"[neudep] {asset}{f' [{partition}]' if partition else ''}: {'; '.join(what[:3])}"
                        f"{' …' if len(what) > 3 else ''}: recomputed")
                if line not in logged:
                    logged.add(line)
                    log(line)
        return gone

    logged, memo = set(), []

    for level in ("dataset_job", "model_job", "target_job", "pair_job"):
        # each level is planned after the one before it ran, so staleness sees its new data versions
        for job_name, partition, assets in [s for s in plan(graph, instance, names, changed=changed, missing=missing())
                                            if s[0] == level]:
            run(job_name, partition, assets)
    # uses of dependencies (§3.2, §3.3): a regularized parent's children become models of their own
    for job_name, partition, assets in uses_steps(graph, instance, project):
        run(job_name, partition, assets)
    # pairs never computed (a|a, derived children): a materialization with a note, no run, nothing stored
    if recorded := record_uncomputed_pairs(instance, project.regularization.derived()):
        log(f"[neudep] pairs never computed, recorded as such (no run): {', '.join(recorded)}")
    for job_name, partition, assets in [s for s in plan(graph, instance, names, changed=changed, missing=missing())
                                       if s[0] == "comparisons_job"]:
        run(job_name, partition, assets)
    if not done:
        log("[neudep] everything is up to date: nothing launched")
    return done


def _execute_out_of_process(job_name: str, config: Path, root: Path, instance, partition, selection, run_config):
    """One run through the executor of the config (e.g. Dask): its steps run in other processes, which
    load this code location from NEUDEP_CONFIG / NEUDEP_DATA."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    os.environ["NEUDEP_CONFIG"], os.environ["NEUDEP_DATA"] = str(config), str(root)
    job = ReconstructableRepository.for_module("neudep_assets.env_definitions", "defs",
                                               working_directory=os.getcwd())
    tags = {"dagster/partition": str(partition)} if partition is not None else {}
    return dg.execute_job(job.get_reconstructable_job(job_name), instance=instance, run_config=run_config,
                          tags=tags, asset_selection=selection)


def print_summary(root: Path | None = None) -> None:
    """What the store holds: models and accuracy, the current analyses' dependencies at λ_rel = 0.1 (an
    analysis without that λ: at its λ closest to it, said so), the strongest ones."""
    from neudep_assets.lib.analysis.offsets import OFFSET_SHARE_WARN, offset_warning

    store = _store(root)
    q = (SQL_DIR / "queries").joinpath
    print("\n== models (val accuracy) ==")
    print(_fmt(store.query(q("models.sql").read_text())))
    offsets = store.query(q("logit_offsets.sql").read_text())
    print("\n== logit offsets: per-sample mean logit m(x) and its share of E[f²] (softmax ignores m) ==")
    print(_fmt(offsets))
    for _, r in offsets[offsets["offset_share_pct"] > 100 * OFFSET_SHARE_WARN].iterrows():
        print(f"warning: {offset_warning(r['model'], r['split'], r['offset_share_pct'] / 100)}")
    print("\n== classes with a dependency (≤ 10 sources, Rel Err ≤ 20%) at λ_rel = 0.1 (else the λ closest to it), "
          "current analyses, per logit gauge ==")
    print(_fmt(store.query(q("dependency_share.sql").read_text())))
    print("\n== the five strongest within-model dependencies at λ_rel = 0.1 (current analyses) ==")
    print(_fmt(store.query(q("strongest_dependencies.sql").read_text())))
    inc = store.query(q("incremental_table.sql").read_text())
    if len(inc):
        print("\n== new categories from old logits (paper Tables 2 and 4; accuracy in %, mean and std over seeds) ==")
        print(_fmt(inc))
    for parent in store.query("SELECT DISTINCT parent_model FROM regularization_results ORDER BY 1")["parent_model"]:
        print(f"\n== dependency regularizer on {parent} (paper Table 3) ==")
        print(_fmt(store.query(q("regularization_table3.sql").read_text(), {"parent": parent})))


def open_store(root: Path | None = None, config: Path | None = None):
    """The result store of a data root: its root from NEUDEP_STORE or the config's `store:` key."""
    from neudep_assets.lib.config import store_location
    from neudep_assets.lib.store import ResultStore

    root = root or data_root()
    url, origin = store_location(root, config)
    return ResultStore(root, url, origin=origin)


def _store(root: Path | None = None):
    """The result store, reachable, its user catalog brought up to date (e.g. a copied data root
    re-pointed; a remote store root has none)."""
    import duckdb

    store = open_store(root)
    store.verify()
    try:
        store.ensure_catalog()
    except (OSError, duckdb.Error) as exc:  # a read-only data root: queries work without it
        print(f"[neudep] catalog {store.catalog_path} not updated: {exc}", file=sys.stderr)
    return store


def _fmt(df) -> str:
    import pandas as pd

    with pd.option_context("display.max_columns", 50, "display.width", 160, "display.max_colwidth", 90):
        return df.to_string(index=False) if len(df) else "(no rows)"


def _root_cause(error) -> str:
    """The user's own exception inside Dagster's wrappers (it names the culprit)."""
    while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def cmd_demo(args) -> None:
    from neudep_assets.lib.store import StoreError

    t0 = time.perf_counter()
    print(f"[neudep] config {config_path()}  data {data_root()}")
    try:
        run_pipeline(logits_batch_size=args.logits_batch_size)
    except (PipelineError, ValueError, StoreError) as exc:
        raise SystemExit(f"[neudep] {exc}") from None
    try:
        print_summary()
    except StoreError as exc:
        raise SystemExit(f"[neudep] {exc}") from None
    print(f"\n[neudep] demo finished in {time.perf_counter() - t0:.0f}s. `make ui` shows the runs; "
          f"`neudep sql \"SELECT ...\"` queries the store.")


def cmd_summary(args) -> None:
    import duckdb

    from neudep_assets.lib.store import StoreError

    try:
        print_summary()
    except (StoreError, ValueError, duckdb.Error) as exc:
        raise SystemExit(f"[neudep] {exc}") from None


def cmd_cluster_demo(args) -> None:
    """The config's graph on a Dask cluster of two workers on 127.0.0.1 (or --scheduler ADDRESS), then
    with the default executor (each run trains its own checkpoints), and the two result stores
    compared: equal bit for bit but for run ids, timestamps, paths and seconds (docs/cluster.md)."""
    from neudep_assets.cluster import run_cluster_demo
    from neudep_assets.defs.executors import SchedulerUnreachable

    try:
        r = run_cluster_demo(config_path(), data_root() / "cluster-demo", scheduler=args.scheduler)
    except (SchedulerUnreachable, PipelineError) as exc:
        raise SystemExit(f"[neudep] cluster-demo: {exc}") from None
    print(f"[neudep] Dask {r.dask_seconds:.1f}s, in process {r.default_seconds:.1f}s; stores equal: "
          f"{not r.differences}")
    if r.differences:
        why = ("; the checkpoints differ: a model trained with another train.threads, on another kind of CPU or "
               "device, or by other code (docs/cluster.md)"
               if any(d.startswith("checkpoints.checkpoint_sha256") for d in r.differences) else "")
        raise SystemExit("[neudep] the Dask run's store differs from the default run's: "
                         + "; ".join(r.differences) + why)


def cmd_sql(args) -> None:
    if bool(args.query) == bool(args.file):
        raise SystemExit("neudep sql: give either a query or --file FILE")
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise SystemExit(f"neudep sql: no such file: {path}")
        query = path.read_text()
    else:
        query = args.query
    try:
        params = dict(_param(item) for item in args.param or [])
    except ValueError as exc:
        raise SystemExit(f"neudep sql: {exc}") from None
    import duckdb

    from neudep_assets.lib.store import StoreError

    try:
        df = _store().query(query, params or None)
    except (duckdb.Error, StoreError, ValueError) as exc:
        raise SystemExit(f"neudep sql: {exc}") from None
    print(_fmt(df) if df is not None else "ok")


PARAM_TYPES = {"str": str, "int": int, "float": float, "bool": None}
PARAM_HELP = ("bind $NAME in the query (repeatable). NAME=VALUE binds the string VALUE as typed (--param "
              "old=025 stays '025'); NAME:TYPE=VALUE binds another type, TYPE one of str, int, float, bool "
              "(true/false), e.g. --param at_most:float=0.2 --param n:int=3. DuckDB casts a string where the "
              "query compares it with a number, so --param lam=0.1 works in `abs(lambda_rel - $lam)`")


def _param(item: str) -> tuple[str, object]:
    """`--param NAME=VALUE` (a string, as typed) or `NAME:TYPE=VALUE` (TYPE: str, int, float, bool)."""
    spec, sep, value = item.partition("=")
    name, colon, kind = spec.partition(":")
    if not sep or not name.isidentifier():
        raise ValueError(f"--param wants NAME=VALUE or NAME:TYPE=VALUE, got {item!r}")
    if not colon:
        return name, value
    if kind not in PARAM_TYPES:
        raise ValueError(f"--param {item!r}: unknown type {kind!r} (one of {', '.join(PARAM_TYPES)})")
    if kind == "bool":
        if value.lower() not in ("true", "false"):
            raise ValueError(f"--param {item!r}: a bool is true or false")
        return name, value.lower() == "true"
    try:
        return name, PARAM_TYPES[kind](value)
    except ValueError:
        raise ValueError(f"--param {item!r}: {value!r} is not {kind}") from None


def cmd_check(args) -> None:
    """Verify every committed file against its manifest and schema (sha256, rows, footer) and list
    what no manifest lists; exit 1 if anything was found."""
    from neudep_assets.lib.store import StoreError

    try:
        store = open_store()
        t0 = time.perf_counter()
        bad, stray = store.check(), store.strays()
    except StoreError as exc:
        raise SystemExit(f"neudep check: {exc}") from None
    for path, why in bad:
        print(f"damaged: {path} ({why})")
    for path, why in stray:
        print(f"not served: {path} ({why})")
    if args.quarantine and bad:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # each move is printed
            for dest in store.quarantine():
                print(f"moved aside: {dest}")
    print(f"{len(bad)} damaged file(s), {len(stray)} unlisted file(s) or folder(s) under {store.tables_dir}"
          if bad or stray else f"store ok: {store.tables_dir} ({time.perf_counter() - t0:.1f}s: every committed file's "
                                f"sha256, rows, Parquet footer and schema)")
    if bad or stray:
        raise SystemExit(1)


LINEAGE_SQL = """
SELECT * FROM dependency_lineage
WHERE ($run = '' OR dependency_run_id = $run)
  AND ((kind = 'theta_head' AND $run <> '') OR (model = $model AND source_model = $source
       AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9))
"""

CURRENT_RUNS_SQL = """
SELECT DISTINCT dependency_run_id, lambda_index, dataset_id, logit_gauge, role FROM latest_dependency_runs
WHERE model = $model AND source_model = $source AND lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9
  AND ($gauge = '' OR logit_gauge = $gauge)
"""

CHOSEN_RUN_SQL = """
SELECT DISTINCT dependency_run_id, lambda_index, dataset_id, coalesce(logit_gauge, 'raw') AS logit_gauge,
       'chosen' AS role FROM dependency_runs
WHERE dependency_run_id = $run AND ($gauge = '' OR coalesce(logit_gauge, 'raw') = $gauge)
  AND (kind = 'theta_head' OR (lambda_mode = 'relative' AND abs(lambda_rel - $lam) < 1e-9))
"""


def _selection(args) -> dict:
    return {"model": args.model, "source": args.source_model or args.model, "lam": args.lam, "run": args.run or "",
            "gauge": args.gauge or ""}


def _pick_run(store, sel: dict, command: str) -> tuple[str, int, str]:
    """(dependency_run_id, λ index, dataset id) of the one analysis a command reads: --run's, else the
    model's (or pair's) current one (latest_dependency_runs) in --gauge, by default its primary analysis
    (not the other gauge's cross-check)."""
    sql = CHOSEN_RUN_SQL if sel["run"] else CURRENT_RUNS_SQL
    runs = store.query(sql, {k: v for k, v in sel.items() if f"${k}" in sql})
    if not sel["run"] and not sel["gauge"] and len(runs) > 1:
        runs = runs[runs["role"] != "crosscheck"]
        if len(runs) > 1 and (runs["logit_gauge"] == "raw").sum() == 1:  # pre-pointer stores: raw, the paper's
            runs = runs[runs["logit_gauge"] == "raw"]
    if len(runs) != 1:
        what = {k: v for k, v in sel.items() if v != ""}
        raise SystemExit(f"neudep {command}: {len(runs)} analyses match {what}; pass --run or --gauge to choose one"
                         if len(runs) else f"neudep {command}: no analysis matches {what}")
    r = runs.iloc[0]
    return str(r["dependency_run_id"]), int(r["lambda_index"]), str(r["dataset_id"])


def cmd_export_graph(args) -> None:
    from neudep_assets.lib.report import write_dependency_graph

    store = open_store()
    sel = _selection(args)
    run, li, dataset_id = _pick_run(store, sel, "export-graph")
    lineage = store.query("SELECT * FROM dependency_lineage WHERE dependency_run_id = $run AND "
                          "(kind = 'theta_head' OR abs(lambda_rel - $lam) < 1e-9)", {"run": run, "lam": sel["lam"]})
    if len(lineage) and not args.run:  # under the name asked for (a copy of identical weights has its own)
        lineage = lineage.assign(model=sel["model"], source_model=sel["source"])
    classes = store.query("SELECT class_index, name FROM classes WHERE dataset_id = $d", {"d": dataset_id})
    try:
        path = write_dependency_graph(lineage, classes, Path(args.out), args.format)
    except ValueError as exc:
        raise SystemExit(f"neudep export-graph: {exc}") from None
    print(f"wrote {path} ({lineage['target_class'].nunique()} targets, {len(lineage)} edges)")


def cmd_stars(args) -> None:
    from neudep_assets.lib.analysis import best_targets
    from neudep_assets.lib.data import PreparedDataset
    from neudep_assets.lib.report import star_pictures

    store = open_store()
    sel = _selection(args)
    run, li, dataset_id = _pick_run(store, sel, "stars")
    ds_path = store.root / "pointers" / "dataset.json"
    if not ds_path.is_file():
        raise SystemExit(f"neudep stars: no materialized dataset under {store.root}")
    import json

    ds = PreparedDataset.from_json(json.loads(ds_path.read_text()))
    if ds.dataset_id != dataset_id:
        raise SystemExit(f"neudep stars: the analysis is of dataset {dataset_id}, the data root holds {ds.dataset_id}")
    per_target, edges = store.read("dependency_metrics", run), store.read("dependencies", run)
    names = [n.lower() for n in ds.class_names]
    targets = ([names.index(t.lower()) if t.lower() in names else _fail(f"no class named {t!r}") for t in args.target]
               if args.target else best_targets(per_target, int(li), args.top))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = sel["model"] if sel["source"] == sel["model"] else f"{sel['source']}→{sel['model']}"
    for t, (_, png) in zip(targets, star_pictures(edges, per_target, ds, int(li), targets, title, args.lam)):
        path = out / f"star_{title.replace('→', '_to_')}_{t:04d}.png"
        path.write_bytes(png)
        print(f"wrote {path}  ({ds.class_names[t]})")


def cmd_explore(args) -> None:
    """Serve the explorer over the store (read-only) until interrupted."""
    from neudep_assets.explore import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"[neudep] warning: the explorer listens on {args.host}: anyone who reaches it can read the store")
    serve(open_store(), host=args.host, port=args.port)


def _fail(message: str):
    raise SystemExit(f"neudep: {message}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="neudep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="materialize the whole pipeline for the config and print a summary")
    p.add_argument("--logits-batch-size", type=int, default=None, metavar="N",
                   help="images per forward pass for every model's logits (default: each model entry's "
                        "logits_batch_size, else fitted to the input size and the memory at hand)")
    sub.add_parser("summary", help="print the summary of what the result store holds")
    p = sub.add_parser("cluster-demo", help="run the config on a Dask cluster (2 local workers) and compare the store "
                                            "with a default run (under NEUDEP_DATA/cluster-demo)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (default: start one on 127.0.0.1)")
    p = sub.add_parser("check", help="verify every committed store file against its manifest (sha256, rows, Parquet "
                                     "footer, schema) and list files no manifest lists; exit 1 if any")
    p.add_argument("--quarantine", action="store_true",
                   help="move damaged files (their whole analysis) to store/.quarantine/ (unlisted files are "
                        "never served and are left where they are)")
    p = sub.add_parser("sql", help="run one SQL query on the result store, in a sandbox that reads the committed "
                                   "files and nothing else (no file written, no other file read)")
    p.add_argument("query", nargs="?", help="SQL text; $name placeholders take --param name=value")
    p.add_argument("--file", help="read the query from a file, e.g. sql/queries/lineage.sql")
    p.add_argument("--param", action="append", metavar="NAME[:TYPE]=VALUE", help=PARAM_HELP)
    for name, help_ in (("export-graph", "write the dependency graph at one λ as GraphML or node-link JSON"),
                        ("stars", "write star pictures (paper Fig. 2) of the best or of named targets as PNG")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--model", required=True, help="the (target) model")
        p.add_argument("--source-model", help="source model of a between analysis (default: within)")
        p.add_argument("--lambda", dest="lam", type=float, default=0.1, help="relative λ (default 0.1)")
        p.add_argument("--run", help="a dependency_run_id (any analysis, not only the current one; a Θ-head's "
                       "theta-… run is selected by --run alone)")
        p.add_argument("--gauge", choices=("raw", "centered"),
                       help="logit gauge (default: the model's current analysis, not its cross-check)")
        if name == "export-graph":
            p.add_argument("--format", choices=("graphml", "json"), default="graphml")
            p.add_argument("--out", required=True, help="output file")
        else:
            p.add_argument("--target", action="append", help="class name (repeatable); default: the best --top")
            p.add_argument("--top", type=int, default=6)
            p.add_argument("--out", default=str(data_root() / "exports"), help="output folder")
    p = sub.add_parser("explore", help="a local web app over the store: classes, models, λ, checkpoints (read-only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    args = parser.parse_args(argv)
    {"demo": cmd_demo, "cluster-demo": cmd_cluster_demo, "summary": cmd_summary, "check": cmd_check,
     "sql": cmd_sql, "export-graph": cmd_export_graph,
     "stars": cmd_stars, "explore": cmd_explore}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
