// neudep explorer: the star of one class (Cytoscape.js, preset layout) with a λ slider, and the dependency
// graph of a model at one λ (Cytoscape.js cose layout, one colour per connected component).
"use strict";
const neudep = (() => {
  const POS = "#1f5fa8", NEG = "#c0392b";
  const fmt = (v, d = 3) => v === null || v === undefined ? "n/a" : Number.isInteger(v) ? String(v) : Number(v).toPrecision(d);
  const pct = (v) => v === null || v === undefined ? "n/a" : (100 * v).toFixed(1) + "%";
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

  function star(el, view) {
    const ds = el.dataset.dataset, n = view.sources.length, R = 190;
    const cmax = Math.max(1e-12, ...view.sources.map((s) => Math.abs(s.coef)));
    const els = [{data: {id: "target", label: view.target_name, img: `/img/${ds}/${view.target}.png`}, position: {x: 0, y: 0}}];
    view.sources.forEach((s, k) => {
      const ang = -Math.PI / 2 + 2 * Math.PI * k / Math.max(n, 1);
      els.push({data: {id: "s" + s.source, label: s.name, cls: s.source, img: `/img/${ds}/${s.source}.png`},
                position: {x: R * Math.cos(ang), y: R * Math.sin(ang)}});
      els.push({data: {id: "e" + s.source, source: "s" + s.source, target: "target", coef: s.coef,
                       w: 1 + 6 * Math.abs(s.coef) / cmax, label: (s.coef >= 0 ? "+" : "") + fmt(s.coef)}});
    });
    if (el._cy) el._cy.destroy();
    el._cy = cytoscape({container: el, elements: els, layout: {name: "preset", fit: true, padding: 40},
      userZoomingEnabled: false, style: [
        {selector: "node", style: {"background-color": "#fff", "background-image": "data(img)", "background-fit": "contain",
          "border-width": 1, "border-color": "#999", shape: "round-rectangle", width: 46, height: 46,
          label: "data(label)", "font-size": 10, "text-valign": "bottom", "text-margin-y": 4, "text-wrap": "wrap", "text-max-width": 120}},
        {selector: "#target", style: {width: 64, height: 64, "border-width": 2, "border-color": "#333", "font-weight": "bold"}},
        {selector: "edge", style: {width: "data(w)", "line-color": (e) => e.data("coef") >= 0 ? POS : NEG,
          label: "data(label)", "font-size": 10, "text-background-color": "#fff", "text-background-opacity": 0.9,
          color: (e) => e.data("coef") >= 0 ? POS : NEG, "curve-style": "straight"}}]});
    el._cy.on("tap", "node", (ev) => { const c = ev.target.data("cls"); if (c !== undefined) location.href = link(el, c); });
  }

  function link(el, cls) { return `/class/${el.dataset.model}/${cls}?${el.dataset.q}`; }

  function tables(view) {
    const el = document.getElementById("star");
    document.querySelector("#sources tbody").innerHTML = view.sources.length ? view.sources.map((s) =>
      `<tr><td><a href="${link(el, s.source)}">${esc(s.name)}</a></td><td class="${s.coef >= 0 ? "pos" : "neg"}">${fmt(s.coef, 4)}</td></tr>`).join("")
      : `<tr><td colspan="2">no source at this λ (the target is predicted as 0)</td></tr>`;
    const m = view.metrics;
    const rows = [["sources", m.n_sources, m.n_sources], ["Rel Err", pct(m.rel_err), pct(m.rel_err_refit)],
      ["Abs Err", fmt(m.abs_err), fmt(m.abs_err_refit)], ["Acc (orig " + pct(m.orig_acc) + ")", pct(m.acc), pct(m.acc_refit)],
      ["Pos Acc (orig " + pct(m.orig_pos_acc) + ", " + fmt(m.n_pos) + " samples)", pct(m.pos_acc), pct(m.pos_acc_refit)],
      ["λ (absolute) / λ_max", fmt(m.lambda_abs) + " / " + fmt(m.lambda_max), ""], ["certificate (relative KKT)", fmt(m.kkt), ""]];
    document.querySelector("#metrics tbody").innerHTML = rows.map((r) => `<tr><th>${r[0]}</th><td>${r[1]}</td><td>${r[2]}</td></tr>`).join("");
    const d = view.diagnostics;
    const diag = [["residual with all other logits (err0, §2.2)", fmt(d.err0)], ["its share of E[f_i²] (rel_err0)", pct(d.rel_err0)],
      ["rank of C", fmt(d.rank)], ["Eq. 5 violations", fmt(d.eq5_violations)],
      ["Theorem 3: screened / violations", fmt(m.thm3_screened) + " / " + fmt(m.thm3_violations)],
      ["Conjecture 1: screened / violations", fmt(m.conj1_screened) + " / " + fmt(m.conj1_violations)]];
    document.querySelector("#diagnostics tbody").innerHTML = diag.map((r) => `<tr><th>${r[0]}</th><td>${r[1]}</td></tr>`).join("");
  }

  function classPage(view) {
    const el = document.getElementById("star"), slider = document.getElementById("lam");
    const lambdas = slider.dataset.lambdas.split(",").map(Number);
    star(el, view); tables(view);
    slider.addEventListener("input", async () => {
      const lam = lambdas[Number(slider.value)];
      document.getElementById("lam-value").textContent = lam;
      const resp = await fetch(`${slider.dataset.api}&lam=${lam}`);
      const v = await resp.json();
      if (!resp.ok) { document.getElementById("lam-value").textContent = v.error; return; }
      star(el, v); tables(v);
      const pc = document.getElementById("path-chart");
      if (pc) pc.src = pc.src.replace(/lam=[^&]*/, "lam=" + lam);
      const u = new URL(location.href); u.searchParams.set("lam", lam); history.replaceState(null, "", u);
      el.dataset.lambda = lam;
    });
  }

  async function graph(el) {
    const resp = await fetch(el.dataset.src), g = await resp.json();
    const cy = cytoscape({container: el, elements: g.elements, style: [
      {selector: "node", style: {width: 10, height: 10, "background-color": "#999", label: "", "font-size": 8}},
      {selector: "node[color]", style: {"background-color": "data(color)"}},
      {selector: "node.named", style: {label: "data(label)"}},
      {selector: "node.hover", style: {label: "data(label)", "z-index": 10}},
      {selector: "edge", style: {width: 1, opacity: 0.6, "line-color": (e) => e.data("coef") >= 0 ? POS : NEG,
        "target-arrow-color": (e) => e.data("coef") >= 0 ? POS : NEG, "target-arrow-shape": "triangle",
        "arrow-scale": 0.6, "curve-style": g.elements.length > 3000 ? "haystack" : "straight"}}], layout: {name: "preset"}});
    const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
    const comps = cy.elements().components().sort((a, b) => b.length - a.length);
    comps.forEach((c, i) => c.nodes().forEach((n) => n.data("color", i < palette.length ? palette[i] : "#999")));
    if (cy.nodes().length <= 80) cy.nodes().addClass("named");
    cy.layout({name: g.elements.length > 3000 ? "grid" : "cose", animate: false, numIter: 400, randomize: true}).run();
    cy.on("mouseover", "node", (ev) => ev.target.addClass("hover"));
    cy.on("mouseout", "node", (ev) => ev.target.removeClass("hover"));
    cy.on("tap", "node", (ev) => { location.href = link(el, ev.target.data("cls")); });
    el.dataset.nodes = cy.nodes().length; el.dataset.edges = cy.edges().length; el.dataset.components = comps.length;
    document.getElementById("graph-info").insertAdjacentText("beforeend",
      ` Shown: ${cy.nodes().length} classes, ${cy.edges().length} edges, ${comps.length} components.`);
  }

  return {classPage, graph};
})();
