"""dagster-webserver on 127.0.0.1 serves the code location: the asset graph through its GraphQL API,
and a materialization launched there succeeds with its metadata."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from neudep_assets.cluster import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("tiny.yaml")

ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } jobNames } }"
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
LATEST = """{ assetNodes(assetKeys: [{path: ["dataset"]}]) { assetMaterializations(limit: 1) {
  runId metadataEntries { label __typename ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } }"""


def test_webserver_graph_and_a_materialization_through_graphql(tmp_path):
    home = tmp_path / "dagster"
    home.mkdir()
    # runs start at once (no queue daemon in this test)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_coordinator:\n  module: "
                                       "dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEUDEP_CONFIG": str(TINY), "NEUDEP_DATA": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p",
                               str(port), "-w", "workspace.yaml"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/graphql"

    def gql(query, variables=None):
        r = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60)
        r.raise_for_status()
        body = r.json()
        assert "errors" not in body, body
        return body["data"]

    def up():
        try:
            return bool(gql(ASSET_GRAPH)["assetNodes"])
        except (requests.RequestException, AssertionError):
            return False

    try:
        wait_for(up, timeout=400, every=0.25)
        nodes = {tuple(n["assetKey"]["path"]): n for n in gql(ASSET_GRAPH)["assetNodes"]}
        assert {k[0] for k in nodes} >= {"dataset", "checkpoint", "logits", "moments", "dependencies",
                                         "between_dependencies", "comparisons"}
        assert {tuple(d["path"]) for d in nodes[("between_dependencies",)]["dependencyKeys"]} == {
            ("dataset",), ("moments",), ("target_logits",)}
        params = {"selector": {"repositoryLocationName": "neudep_assets.definitions", "repositoryName": "__repository__",
                               "jobName": "dataset_job", "assetSelection": [{"path": ["dataset"]}]},
                  "mode": "default", "runConfigData": {}}
        launched = gql(LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        wait_for(lambda: gql(RUN, {"id": run_id})["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED"),
                 timeout=400, every=0.25)
        assert gql(RUN, {"id": run_id})["runOrError"]["status"] == "SUCCESS"
        (mat,) = gql(LATEST)["assetNodes"][0]["assetMaterializations"]
        meta = {e["label"]: e for e in mat["metadataEntries"]}
        assert mat["runId"] == run_id and meta["n_classes"]["intValue"] == 12 and meta["kind"]["text"] == "glyphs"
    finally:
        server.terminate()
        server.wait(timeout=60)
