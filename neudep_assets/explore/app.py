"""`neudep explore`: a local, read-only web app over the result store (Starlette + Jinja2 pages, the graphs
drawn in the browser by Cytoscape.js, charts as server-side PNG)."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from neudep_assets.explore import charts
from neudep_assets.explore.data import DEP_REL_ERR, DEP_SOURCES, GRAPH_EDGE_LIMIT, Analysis, ExploreData, NotFound
from neudep_assets.explore.images import ClassImages
from neudep_assets.lib.store import ResultStore, StoreError

HERE = Path(__file__).parent
PAIR_ROWS = 100  # the comparison of two models lists the best-reconstructed targets; medians cover them all


def make_app(store: ResultStore) -> Starlette:
    """The explorer over `store` (its data root also gives the class pictures)."""
    data, images = ExploreData(store), ClassImages(store.root)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(pct=_pct, num=_fmt_num, sha=lambda s: (s or "")[:12])

    def page(request: Request, name: str, status: int = 200, **ctx) -> Response:
        ctx.setdefault("title", "neudep explorer")
        ctx.setdefault("models", _safe(data.models, []))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def pick(request: Request, model: str) -> Analysis:
        qp = request.query_params
        return data.analysis(model, source=qp.get("source") or None, gauge=qp.get("gauge") or "raw",
                             run=qp.get("run") or None)

    def lam_of(request: Request) -> float | None:
        text = request.query_params.get("lam")
        try:
            return None if not text else float(text)
        except ValueError:
            raise NotFound(f"λ {text!r} is not a number", [])

    def links(a: Analysis, **extra) -> str:
        q = {"source": a.source_model if a.kind != "within" else "", "gauge": a.gauge, "run": a.run, **extra}
        return urlencode({k: v for k, v in q.items() if v not in ("", None)})

    def index(request: Request) -> Response:
        analyses = data.analyses()
        return page(request, "index.html", analyses=analyses.to_dict("records"), models=sorted(set(analyses["model"])))

    def model_page(request: Request) -> Response:
        model = request.path_params["model"]
        a = pick(request, model)
        li = data.lambda_index(a, lam_of(request))
        qp = request.query_params
        max_rel_err = _float(qp.get("max_rel_err"), DEP_REL_ERR, "max_rel_err")
        max_sources = int(_float(qp.get("max_sources"), DEP_SOURCES, "max_sources"))
        page_no = max(int(_float(qp.get("page"), 0, "page")), 0)
        share = data.share_along_lambda(a)
        _, total = data.graph(a, li, max_rel_err=max_rel_err, max_sources=max_sources, limit=0)
        others = data.analyses(model)
        return page(request, "model.html", title=f"{model} — neudep explorer", a=a, li=li,
                    share=share.to_dict("records"), offsets=data.offsets(model).to_dict("records"),
                    analyses=others.to_dict("records"), q=links(a), max_rel_err=max_rel_err,
                    max_sources=max_sources, page_no=page_no, total_edges=total, page_size=GRAPH_EDGE_LIMIT,
                    graph_q=links(a, lam=a.lambdas[li], max_rel_err=max_rel_err, max_sources=max_sources,
                                  page=page_no))

    def class_page(request: Request) -> Response:
        model, target = request.path_params["model"], request.path_params["target"]
        a = pick(request, model)
        if not target.isdigit():
            return RedirectResponse(f"/class/{model}/{data.find_class(a, target)}?{request.url.query}", 303)
        li = data.lambda_index(a, lam_of(request))
        view = data.class_view(a, int(target), li)
        others = data.analyses(model)
        within = others[others["kind"] == "within"]
        sources = sorted(set(others.loc[others["model"] == model, "source_model"]))
        return page(request, "class.html", title=f"{view['target_name']} in {model} — neudep explorer", a=a,
                    view=view, q=links(a), gauges=sorted(set(within["gauge"])), source_models=sources,
                    has_path=not data.path(a, int(target)).empty)

    def class_json(request: Request) -> Response:
        a = pick(request, request.path_params["model"])
        return JSONResponse(data.class_view(a, int(request.path_params["target"]), data.lambda_index(a, lam_of(request))))

    def graph_json(request: Request) -> Response:
        a = pick(request, request.path_params["model"])
        qp = request.query_params
        li = data.lambda_index(a, lam_of(request))
        page_no = max(int(_float(qp.get("page"), 0, "page")), 0)
        edges, total = data.graph(a, li, max_rel_err=_float(qp.get("max_rel_err"), DEP_REL_ERR, "max_rel_err"),
                                  max_sources=int(_float(qp.get("max_sources"), DEP_SOURCES, "max_sources")),
                                  offset=page_no * GRAPH_EDGE_LIMIT)
        names = data.classes(a.dataset_id).set_index("class_index")["name"].to_dict()
        src_prefix = "s" if a.kind != "within" else "t"
        nodes = {}
        for t in edges["target_class"]:
            nodes[f"t{t}"] = {"id": f"t{t}", "label": names.get(int(t), str(t)), "cls": int(t), "role": "target"}
        for s in edges["source_class"]:
            nodes.setdefault(f"{src_prefix}{s}", {"id": f"{src_prefix}{s}", "label": names.get(int(s), str(s)),
                                                  "cls": int(s), "role": "source"})
        els = [{"data": n} for n in nodes.values()] + [
            {"data": {"id": f"e{k}", "source": f"{src_prefix}{s}", "target": f"t{t}", "coef": float(c)}}
            for k, (t, s, c) in enumerate(zip(edges["target_class"], edges["source_class"], edges["coef"]))]
        return JSONResponse({"elements": els, "total_edges": total, "shown_edges": len(edges), "page": page_no,
                             "page_size": GRAPH_EDGE_LIMIT})

    def search(request: Request) -> Response:
        qp = request.query_params
        model, text = qp.get("model") or "", (qp.get("q") or "").strip()
        if not model:
            raise NotFound("choose a model to search in", data.models())
        a = pick(request, model)
        return RedirectResponse(f"/class/{model}/{data.find_class(a, text)}?{links(a)}", 303)

    def compare(request: Request) -> Response:
        qp = request.query_params
        model = qp.get("model") or ""
        ctx = {"models": data.models(), "model": model, "diff": None, "pair": None}
        if model:
            ckpts = data.checkpoints(model)
            ctx["checkpoints"] = ckpts.to_dict("records")
            lam, gauge = _float(qp.get("lam"), 0.1, "lam"), qp.get("gauge") or "raw"
            ctx.update(lam=lam, gauge=gauge)
            old, new = qp.get("old") or "", qp.get("new") or ""
            if not old and len(ckpts) >= 2:
                old, new = ckpts["checkpoint"].iloc[-2], ckpts["checkpoint"].iloc[-1]
            if old and new:
                known = list(ckpts["checkpoint"])
                for which, prefix in (("old", old), ("new", new)):
                    if not any(c.startswith(prefix) for c in known):
                        raise NotFound(f"{model} has no analysed checkpoint {prefix!r} ({which})", known)
                thr = _float(qp.get("threshold"), 0.05, "threshold")
                ctx.update(old=old, new=new, threshold=thr,
                           diff=data.checkpoint_diff(model, old, new, lam, gauge, thr).to_dict("records"))
            other = qp.get("other") or ""
            if other:
                pair = data.within_vs_between(model, other, lam, gauge).sort_values("within_rel_err")
                ctx.update(other=other, pair=pair.head(PAIR_ROWS).to_dict("records"), pair_total=len(pair),
                           pair_medians=pair.median(numeric_only=True).to_dict())
        return page(request, "compare.html", title="compare — neudep explorer", **ctx)

    def image(request: Request) -> Response:
        png = images.png(request.path_params["dataset"], int(request.path_params["cls"]))
        if png is None:
            return Response(status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    def chart(request: Request) -> Response:
        kind, run = request.path_params["kind"], request.path_params["run"]
        rows = data.analyses()
        rows = rows[rows["run"] == run]
        if rows.empty:
            raise NotFound(f"no analysis {run!r}", [])
        a = data.analysis(rows["model"].iloc[0], run=run)
        lam = lam_of(request)
        if kind == "share":
            png = charts.share_chart(data.share_along_lambda(a), a.lambdas)
        elif kind == "dist":
            li = data.lambda_index(a, lam)
            png = charts.distribution_chart(data.per_target(a, li), a.lambdas[li])
        elif kind == "path":
            target = int(_float(request.query_params.get("target"), -1, "target"))
            knots = data.path(a, target)
            if knots.empty:
                raise NotFound(f"analysis {run} kept no exact path for class {target}", [])
            names = data.classes(a.dataset_id).set_index("class_index")["name"].to_dict()
            png = charts.path_chart(knots, names, lam)
        else:
            raise NotFound(f"no chart {kind!r}", ["share", "dist", "path"])
        return Response(png, media_type="image/png")

    def not_found(request: Request, exc: NotFound) -> Response:
        if request.url.path.startswith(("/api/", "/chart/", "/img/")):
            return JSONResponse({"error": exc.what, "known": exc.known}, status_code=404)
        return page(request, "notfound.html", status=404, what=exc.what, known=exc.known,
                    models=_safe(data.models, []))

    def store_error(request: Request, exc: StoreError) -> Response:
        return page(request, "notfound.html", status=503, what=f"the store cannot be read right now: {exc}",
                    known=[], models=[])

    routes = [
        Route("/", index), Route("/model/{model}", model_page), Route("/class/{model}/{target}", class_page),
        Route("/api/class/{model}/{target:int}", class_json), Route("/api/graph/{model}", graph_json),
        Route("/search", search), Route("/compare", compare),
        Route("/img/{dataset}/{cls:int}.png", image), Route("/chart/{kind}/{run}.png", chart),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={NotFound: not_found, StoreError: store_error})


def serve(store: ResultStore, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the explorer until interrupted."""
    import uvicorn

    print(f"[neudep] explorer on http://{host}:{port}/ (read-only; Ctrl-C stops it)")
    uvicorn.run(make_app(store), host=host, port=port, log_level="warning")


def _float(text, default: float, name: str) -> float:
    if text in (None, ""):
        return default
    try:
        v = float(text)
    except ValueError:
        raise NotFound(f"{name} {text!r} is not a number", [])
    if not math.isfinite(v):
        raise NotFound(f"{name} {text!r} is not finite", [])
    return v


def _safe(fn, default):
    try:
        return fn()
    except Exception:  # the error page must not fail on a second store error
        return default


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.{digits}f}%"


def _fmt_num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (int,)) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e6):
        return f"{int(v)}"
    return f"{float(v):.{digits}g}"
