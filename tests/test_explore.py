"""`neudep explore` on a small store the test writes: pages, JSON, errors, read-only-ness, and (with
Chromium) the pages as a browser draws them: the star's sources, the λ slider, the graph, a checkpoint diff."""

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from neudep_assets.lib.store import ResultStore

NAMES = ["alpha", "beta", "gamma", "delta", "epsilon"]
LAMBDAS = [0.5, 0.1]
# (checkpoint, λ index) -> target -> {source: coef}
OLD = {0: {0: {1: 0.7}, 4: {}}, 1: {0: {1: 0.9, 2: -0.3}, 4: {3: 0.5}}}
NEW = {0: {0: {1: 0.8}, 4: {}}, 1: {0: {1: 0.9, 3: 0.4}, 4: {3: 0.5}}}


def _analysis(key, sha, edges_by_li, *, kind="within", model="m", source="m", gauge="raw"):
    targets = sorted({t for e in edges_by_li.values() for t in e})
    runs = [{"dependency_run_id": key, "kind": kind, "lambda_index": li, "lambda_rel": lam, "lambda_value": lam,
             "lambda_mode": "relative", "model": model, "checkpoint_sha256": sha, "source_model": source,
             "source_checkpoint_sha256": sha, "dataset_id": "d", "tol": 1e-9, "max_kkt": 0.0, "logit_gauge": gauge}
            for li, lam in enumerate(LAMBDAS)]
    metrics = [{"dependency_run_id": key, "lambda_index": li, "target_class": t, "lambda_abs": lam, "lambda_max": 1.0,
                "kkt": 1e-12, "n_sources": len(edges_by_li[li][t]), "abs_err": 0.1, "rel_err": 0.05 + 0.1 * li,
                "acc": 0.8, "orig_acc": 0.8, "pos_acc": 0.5, "orig_pos_acc": 1.0, "n_pos": 4, "rel_err_refit": 0.04}
               for li, lam in enumerate(LAMBDAS) for t in targets]
    edges = [{"dependency_run_id": key, "lambda_index": li, "target_class": t, "source_class": s, "coef": c}
             for li, e in edges_by_li.items() for t, srcs in e.items() for s, c in srcs.items()]
    diag = [{"dependency_run_id": key, "target_class": t, "err0": 0.01, "rel_err0": 0.02, "rank": 5} for t in targets]
    return {"dependency_runs": runs, "dependency_metrics": pd.DataFrame(metrics), "dependencies": pd.DataFrame(edges),
            "class_diagnostics": pd.DataFrame(diag)}


def _files(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("explore-data"))
    store.write("classes", "d", [{"dataset_id": "d", "class_index": i, "name": n} for i, n in enumerate(NAMES)],
                run_id="r", code_version="v")
    for key, sha, edges in (("old", "a1" * 32, OLD), ("new", "b2" * 32, NEW)):
        store.write("checkpoints", sha, [{"checkpoint_sha256": sha, "model": "m", "dataset_id": "d"}],
                    run_id="r", code_version="v")
        store.commit_analysis(key, _analysis(key, sha, edges), run_id="r", code_version="v")
        time.sleep(0.02)
    store.commit_analysis("pair", _analysis("pair", "b2" * 32, NEW, kind="between", source="o"), run_id="r",
                          code_version="v")
    return store


@pytest.fixture(scope="module")
def server(store):
    import uvicorn

    from neudep_assets.explore import make_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the explorer did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
            return r.status, (body.decode() if r.headers.get_content_type() != "image/png" else body)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_pages_and_json_show_what_the_store_holds(server, store):
    before = _files(store.root / "store")
    status, body = get(f"{server}/")
    assert status == 200 and "new" in body and "pair" in body
    status, body = get(f"{server}/api/class/m/0?lam=0.1")
    view = json.loads(body)
    assert status == 200 and view["target_name"] == "alpha"
    assert {s["name"]: s["coef"] for s in view["sources"]} == {"beta": 0.9, "delta": 0.4}  # the latest: NEW
    status, body = get(f"{server}/api/class/m/0?lam=0.1&run=old")
    assert {s["name"]: s["coef"] for s in json.loads(body)["sources"]} == {"beta": 0.9, "gamma": -0.3}
    status, body = get(f"{server}/api/graph/m?lam=0.1&max_rel_err=1")
    g = json.loads(body)
    assert g["total_edges"] == 3 and sum("source" in e["data"] for e in g["elements"]) == 3
    assert get(f"{server}/model/m")[0] == 200 and get(f"{server}/compare?model=m&other=o")[0] == 200
    assert get(f"{server}/chart/share/new.png")[0] == 200
    status, body = get(f"{server}/search?model=m&q=epsi")
    assert status == 200 and "<h1 id=\"target-name\">epsilon</h1>" in body  # redirected to the class page
    status, body = get(f"{server}/class/m/delta")
    assert status == 404 and "class 3 was not analysed" in body  # a source only, never a target
    assert _files(store.root / "store") == before, "the explorer wrote to the store"


@pytest.mark.parametrize("path, says", [
    ("/model/nope", "no analysis of a model named 'nope'"), ("/class/m/99", "class 99 is not in dataset d"),
    ("/class/m/0?lam=0.3", "λ_rel = 0.3 is not in this analysis"), ("/class/m/zeta", "no class matches 'zeta'"),
    ("/class/m/0?run=nope", "no analysis 'nope'"), ("/class/m/0?lam=abc", "λ 'abc' is not a number"),
    ("/compare?model=m&old=ffff&new=b2", "m has no analysed checkpoint 'ffff' (old)"),
])
def test_unknown_things_get_a_page_that_says_what_exists(server, path, says):
    status, body = get(server + path)
    assert status == 404 and says in body.replace("&#39;", "'") and "Traceback" not in body
    if path.startswith("/model"):
        assert "<li>m</li>" in body  # what exists
    if path.startswith("/compare"):
        assert f"<li>{'b2' * 32}</li>" in body


def test_an_empty_store_gets_a_clear_page(tmp_path):
    import asyncio

    from neudep_assets.explore import make_app

    app = make_app(ResultStore(tmp_path / "empty"))
    sent = []

    async def call():
        scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"", "headers": [],
                 "scheme": "http", "server": ("t", 80), "client": ("t", 1), "root_path": "", "http_version": "1.1"}

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(msg):
            sent.append(msg)
        await app(scope, receive, send)
    asyncio.run(call())
    body = b"".join(m.get("body", b"") for m in sent).decode()
    assert sent[0]["status"] == 200 and "no committed analysis yet" in body and "make demo" in body


def _browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        if os.environ.get("NEUDEP_REQUIRE_BROWSER"):
            pytest.fail("NEUDEP_REQUIRE_BROWSER is set but Chromium or playwright is missing")
        pytest.skip("no Chromium/playwright here: `apt-get install chromium` (the browser tests need it)")
    return sync_playwright, exe


def test_in_a_browser(server):
    sync_playwright, exe = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # the class page: the star's sources and coefficients at the default λ (0.1)
        page.goto(f"{server}/class/m/alpha")
        page.wait_for_selector("#sources tbody tr")
        rows = page.locator("#sources tbody tr").all_inner_texts()
        assert [r.split("\t") for r in rows] == [["beta", "0.9000"], ["delta", "0.4000"]]
        assert page.evaluate("document.getElementById('star')._cy.edges().length") == 2
        # the λ slider walks the grid: at 0.5 one source, other coefficient
        page.locator("#lam").fill("0")
        page.wait_for_function("document.querySelectorAll('#sources tbody tr').length === 1")
        assert page.locator("#sources tbody tr").inner_text().split("\t") == ["beta", "0.8000"]
        assert page.locator("#lam-value").inner_text() == "0.5"
        # the model page's graph renders (cytoscape drew its nodes and edges)
        page.goto(f"{server}/model/m?max_rel_err=1")
        page.wait_for_function("document.getElementById('graph').dataset.edges !== undefined")
        assert page.evaluate("document.getElementById('graph').dataset.edges") == "3"
        assert page.locator("#graph canvas").count() > 0
        # the comparison lists the known changed edges between the two checkpoints
        page.goto(f"{server}/compare?model=m&old={'a1' * 6}&new={'b2' * 6}&lam=0.1&gauge=raw")
        changes = {tuple(r.split("\t")[:3]) for r in page.locator("#diff tbody tr").all_inner_texts()}
        assert changes == {("gained", "alpha", "delta"), ("lost", "alpha", "gamma")}
        assert not errors, errors
        browser.close()
