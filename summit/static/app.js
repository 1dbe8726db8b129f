// Summit UI: class list + embedding, attribution graph, channel detail, unit browser, compare.
// Plain ES module; D3 v7 is the global `d3` loaded from /static/vendor.

const COLORS = { a: "#2f7fc1", b: "#e8771e", both: "#8a5cc2" };
const $ = (sel) => document.querySelector(sel);

const state = {
  meta: null,
  classes: [],
  fv: {},                       // layer -> Set of channels with a rendered feature vis
  selected: null,               // class name
  compare: false,
  compareWith: null,
  params: { method: "pagerank", ubiquitous: "hide", top_n: 10, edges_per_node: 3 },
  graph: null,
  graphSeq: 0,
  detail: null,                 // "layer:channel" shown in the detail panel
  tab: "graph",
  layer: null,
  units: null,                  // /api/layer response shown in the unit browser
};

// ---------------------------------------------------------------- helpers
async function api(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function showError(err) {
  const el = $("#status");
  el.textContent = String(err.message || err);
  el.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  e.append(...children.filter((c) => c != null));
  return e;
}

const pct = (x) => (x == null ? "–" : `${Math.round(100 * x)}%`);
const fmt = (x) => (x == null ? "–" : d3.format(".3~s")(x));
const classByName = (name) => state.classes.find((c) => c.name === name);
const examplesUrl = (layer, ch) => `/api/examples/${encodeURIComponent(layer)}/${ch}.jpg`;
const fvUrl = (layer, ch) => `/api/featurevis/${encodeURIComponent(layer)}/${ch}.png`;

/** Thumbnail of a unit: its feature vis if rendered, else the first dataset-example patch. */
function thumbOf(layer, ch) {
  if (state.fv[layer]?.has(ch)) return { kind: "fv", url: fvUrl(layer, ch) };
  if (state.meta.has_examples) return { kind: "ex", url: examplesUrl(layer, ch) };
  return null;
}

/** HTML thumbnail: <img> for feature vis, CSS crop of the strip's first patch otherwise. */
function thumbHtml(layer, ch, size) {
  const t = thumbOf(layer, ch);
  if (!t) return el("div", { class: "dot", text: "●" });
  if (t.kind === "fv") {
    const img = el("img", { class: "thumb", src: t.url, alt: `${layer}:${ch}`, loading: "lazy" });
    img.style.width = img.style.height = `${size}px`;
    return img;
  }
  return cropHtml(t.url, 0, size);
}

function cropHtml(url, i, size) {
  const box = el("div", { class: "crop" });
  if (size) box.style.width = box.style.height = `${size}px`;
  const img = el("img", { src: url, alt: "", loading: "lazy", class: "patch" });
  img.style.left = `-${i * 100}%`;
  box.append(img);
  return box;
}

function download(blob, name) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ---------------------------------------------------------------- URL hash state
function writeHash() {
  const p = new URLSearchParams();
  if (state.selected) p.set("class", state.selected);
  if (state.compare && state.compareWith) p.set("compare", state.compareWith);
  p.set("method", state.params.method);
  if (state.params.ubiquitous === "show") p.set("ubiquitous", "show");
  p.set("top_n", state.params.top_n);
  p.set("edges_per_node", state.params.edges_per_node);
  if (state.tab !== "graph") p.set("tab", state.tab);
  if (state.layer) p.set("layer", state.layer);
  if (state.detail) p.set("unit", state.detail);
  history.replaceState(null, "", `#${p}`);
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const int = (k, lo, hi, dflt) => {
    const v = parseInt(p.get(k), 10);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  state.params.top_n = int("top_n", 1, 30, 10);
  state.params.edges_per_node = int("edges_per_node", 0, 10, 3);
  state.params.method = p.get("method") === "topn" ? "topn" : "pagerank";
  state.params.ubiquitous = p.get("ubiquitous") === "show" ? "show" : "hide";
  if (p.get("compare") && classByName(p.get("compare"))) {
    state.compare = true;
    state.compareWith = p.get("compare");
  }
  const layer = p.get("layer");
  if (layer && state.meta.layers.some((l) => l.name === layer)) state.layer = layer;
  return { cls: p.get("class"), tab: p.get("tab"), unit: p.get("unit") };
}

// ---------------------------------------------------------------- class list + embedding
function renderClassList() {
  const q = $("#class-search").value.trim().toLowerCase();
  const sort = $("#class-sort").value;
  const cmp = {
    count: (a, b) => b.n_images - a.n_images || a.name.localeCompare(b.name),
    accuracy: (a, b) => (b.accuracy ?? -1) - (a.accuracy ?? -1) || a.name.localeCompare(b.name),
    name: (a, b) => a.name.localeCompare(b.name),
  }[sort];
  const rows = state.classes.filter((c) => c.name.toLowerCase().includes(q)).sort(cmp);
  const list = $("#class-list");
  list.replaceChildren(...rows.map((c) => {
    const bar = el("div", { class: "bar" }, el("span"));
    bar.firstChild.style.width = pct(c.accuracy ?? 0);
    const li = el("li", {
      "data-class": c.name, title: `${c.name}: ${c.n_images} images, top-1 accuracy ${pct(c.accuracy)}`,
      onclick: () => selectClass(c.name),
    }, el("span", { class: "name", text: c.name }),
    el("span", { class: "stats", text: `${c.n_images} · ${pct(c.accuracy)}` }), bar);
    li.classList.toggle("selected", c.name === state.selected);
    li.classList.toggle("compared", state.compare && c.name === state.compareWith);
    return li;
  }));
  if (!rows.length) list.append(el("li", { class: "empty", text: "no class matches" }));
}

async function renderEmbedding() {
  const box = $("#embedding");
  let pts;
  try {
    pts = (await api("/api/embedding")).points;
  } catch (err) {
    box.replaceChildren(el("p", { class: "note", text: err.message }));
    return;
  }
  const w = 230, h = 200, m = 10;
  const x = d3.scaleLinear().domain(d3.extent(pts, (d) => d.x)).nice().range([m, w - m]);
  const y = d3.scaleLinear().domain(d3.extent(pts, (d) => d.y)).nice().range([h - m, m]);
  const r = d3.scaleSqrt().domain([0, d3.max(pts, (d) => d.n_images) || 1]).range([2, 7]);
  const color = d3.scaleSequential(d3.interpolateRdYlGn).domain([0, 1]);
  const acc = new Map(state.classes.map((c) => [c.name, c.accuracy]));
  const svg = d3.create("svg").attr("viewBox", `0 0 ${w} ${h}`).attr("id", "embedding-svg");
  svg.append("rect").attr("width", w).attr("height", h).attr("fill", "#fafbfc").attr("rx", 4);
  svg.selectAll("circle").data(pts).join("circle")
    .attr("cx", (d) => x(d.x)).attr("cy", (d) => y(d.y)).attr("r", (d) => r(d.n_images))
    .attr("fill", (d) => (acc.get(d.name) == null ? "#999" : color(acc.get(d.name))))
    .attr("data-class", (d) => d.name)
    .on("click", (ev, d) => selectClass(d.name))
    .append("title").text((d) => `${d.name} (${d.n_images} images, accuracy ${pct(acc.get(d.name))})`);
  svg.append("g").attr("class", "labels");
  box.replaceChildren(svg.node());
  box._scales = { x, y, pts };
  markEmbedding();
}

function markEmbedding() {
  const box = $("#embedding");
  if (!box._scales) return;
  const { x, y, pts } = box._scales;
  const svg = d3.select(box).select("svg");
  svg.selectAll("circle")
    .classed("selected", (d) => d.name === state.selected)
    .classed("compared", (d) => state.compare && d.name === state.compareWith);
  svg.selectAll("circle.selected, circle.compared").raise();
  const marked = pts.filter((d) => d.name === state.selected || (state.compare && d.name === state.compareWith));
  svg.select("g.labels").raise().selectAll("text").data(marked).join("text")
    .attr("x", (d) => x(d.x)).attr("y", (d) => y(d.y) - 9)
    .attr("text-anchor", (d) => (x(d.x) < 60 ? "start" : x(d.x) > 170 ? "end" : "middle"))
    .text((d) => d.name);
}

function selectClass(name) {
  if (state.compare && state.selected && name !== state.selected && state.compareWith === name) {
    state.compareWith = state.selected;        // swap instead of comparing a class with itself
    $("#compare-select").value = state.compareWith;
  }
  state.selected = name;
  renderClassList();
  markEmbedding();
  showTab("graph");
  loadGraph();
}

// ---------------------------------------------------------------- attribution graph
function graphQuery() {
  return new URLSearchParams({ method: state.params.method, ubiquitous: state.params.ubiquitous,
                               top_n: state.params.top_n, edges_per_node: state.params.edges_per_node });
}

async function loadGraph() {
  if (!state.selected) return;
  const seq = ++state.graphSeq;
  const q = graphQuery();
  let url;
  if (state.compare && state.compareWith) {
    q.set("a", state.selected);
    q.set("b", state.compareWith);
    url = `/api/compare?${q}`;
  } else {
    q.set("class", state.selected);
    url = `/api/graph?${q}`;
  }
  writeHash();
  $("#graph").classList.add("busy");
  try {
    const g = await api(url);
    if (seq !== state.graphSeq) return;
    state.graph = g;
    drawGraph(g);
  } catch (err) {
    if (seq === state.graphSeq) showError(err);
  } finally {
    if (seq === state.graphSeq) $("#graph").classList.remove("busy");
  }
}

/** Order nodes inside each row by the barycenter of their neighbours (fewer crossings). */
function orderRows(rows, preds, succs) {
  const pos = new Map();
  const place = () => rows.forEach((r) => r.forEach((n, i) => pos.set(n.id, i - (r.length - 1) / 2)));
  place();
  const bary = (n, nbrs) => {
    const xs = (nbrs.get(n.id) || []).filter((m) => pos.has(m)).map((m) => pos.get(m));
    return xs.length ? d3.mean(xs) : pos.get(n.id);
  };
  for (let it = 0; it < 3; it++) {
    for (let i = 1; i < rows.length; i++) { rows[i].sort((a, b) => bary(a, preds) - bary(b, preds)); place(); }
    for (let i = rows.length - 2; i >= 0; i--) { rows[i].sort((a, b) => bary(a, succs) - bary(b, succs)); place(); }
  }
}

function drawGraph(g) {
  const box = $("#graph");
  const compare = g.nodes.some((n) => n.membership);
  const info = g.summit?.class || {};
  renderGraphTitle(g, info, compare);   // first: the toolbar's height sets the room left for rows
  renderLegend(compare);
  const layers = state.meta.layers.map((l) => l.name);
  const byLayer = d3.group(g.nodes, (n) => n.layer);
  const rows = layers.map((l) => (byLayer.get(l) || []).slice().sort((a, b) => b.count - a.count || a.channel - b.channel));
  const preds = new Map(), succs = new Map();
  for (const e of g.links) {
    if (!preds.has(e.target)) preds.set(e.target, []);
    if (!succs.has(e.source)) succs.set(e.source, []);
    preds.get(e.target).push(e.source);
    succs.get(e.source).push(e.target);
  }
  orderRows(rows, preds, succs);

  const left = 92, top = 40;
  // rows fill the visible height (so the whole network fits) within readable bounds
  const ROW_H = Math.max(76, Math.min(110, Math.floor((box.clientHeight - top - 14) / layers.length)));
  const size = d3.scaleSqrt().domain([0, 1]).range([16, ROW_H * 0.52]).clamp(true);
  const frac = (n) => (compare ? Math.max(n.fraction_a, n.fraction_b) : n.fraction);
  const slot = Math.round(ROW_H * 0.52) + 12;
  const widest = d3.max(rows, (r) => r.length) || 1;
  const width = Math.max(box.clientWidth - 4, left + widest * slot + 30);
  const height = top + layers.length * ROW_H + 10;
  const cx = left + (width - left - 20) / 2;
  const nodes = new Map();
  rows.forEach((r, i) => {
    const yRow = top + (layers.length - 1 - i) * ROW_H + ROW_H / 2;   // input at the bottom
    r.forEach((n, j) => nodes.set(n.id, { ...n, x: cx + (j - (r.length - 1) / 2) * slot, y: yRow, s: size(frac(n)) }));
  });

  const edgeCount = (e) => e.count ?? Math.max(e.count_a, e.count_b);
  const maxCount = d3.max(g.links, edgeCount) || 1;
  const ew = d3.scaleSqrt().domain([0, maxCount]).range([0.6, 7]);
  const svg = d3.create("svg")
    .attr("xmlns", "http://www.w3.org/2000/svg")
    .attr("width", width).attr("height", height)
    .attr("font-family", "system-ui, 'DejaVu Sans', sans-serif").attr("font-size", 11)
    .attr("data-class", state.selected)
    .attr("data-compare", compare ? state.compareWith : null);
  svg.append("rect").attr("width", width).attr("height", height).attr("fill", "#fff");
  svg.append("text").attr("x", 12).attr("y", 22).attr("font-size", 14).attr("font-weight", 600).attr("fill", "#1d232b")
    .text(compare ? `${state.selected} vs ${state.compareWith}` : `${info.name ?? state.selected}`);
  const band = svg.append("g").attr("class", "rows");
  layers.forEach((l, i) => {
    const y0 = top + (layers.length - 1 - i) * ROW_H;
    band.append("rect").attr("x", 0).attr("y", y0).attr("width", width).attr("height", ROW_H)
      .attr("fill", i % 2 ? "#fafbfc" : "#f3f5f8");
    band.append("text").attr("x", 12).attr("y", y0 + ROW_H / 2 + 4).attr("fill", "#515b66").attr("font-weight", 600).text(l);
    if (!rows[i].length) {
      band.append("text").attr("x", cx).attr("y", y0 + ROW_H / 2 + 4).attr("text-anchor", "middle")
        .attr("fill", "#9aa3ad").text("no units pass the filters");
    }
  });
  band.append("text").attr("x", 12).attr("y", top + 12).attr("fill", "#9aa3ad").attr("font-size", 10).text("output ↑");
  band.append("text").attr("x", 12).attr("y", height - 16).attr("fill", "#9aa3ad").attr("font-size", 10).text("input ↓");

  const links = g.links.filter((e) => nodes.has(e.source) && nodes.has(e.target));
  const linkPath = d3.linkVertical().x((p) => p[0]).y((p) => p[1]);
  svg.append("g").attr("class", "edges").attr("fill", "none").selectAll("path").data(links).join("path")
    .attr("class", "edge")
    .attr("data-source", (e) => e.source).attr("data-target", (e) => e.target)
    .attr("d", (e) => {
      const a = nodes.get(e.source), b = nodes.get(e.target);
      return linkPath({ source: [a.x, a.y - a.s / 2], target: [b.x, b.y + b.s / 2] });
    })
    .attr("stroke", (e) => (compare ? COLORS[e.membership] || "#8c96a1" : "#8c96a1"))
    .attr("stroke-opacity", 0.75)
    .attr("stroke-width", (e) => ew(edgeCount(e)))
    .append("title").text((e) => `${e.source} → ${e.target}: influence count ` +
      (compare ? `a ${e.count_a}, b ${e.count_b}` : e.count));

  const K = Math.max(1, state.meta.examples_k || 1);
  const defs = svg.append("defs");
  const gnode = svg.append("g").attr("class", "nodes").selectAll("g").data([...nodes.values()]).join("g")
    .attr("class", "node")
    .attr("data-node", (n) => n.id)
    .attr("data-membership", (n) => n.membership ?? null)
    .attr("transform", (n) => `translate(${n.x},${n.y})`)
    .on("mouseenter", (ev, n) => highlight(svg, n.id, preds, succs))
    .on("mouseleave", () => highlight(svg, null))
    .on("click", (ev, n) => openChannel(n.layer, n.channel));
  gnode.each(function (n) {
    const gg = d3.select(this);
    const stroke = compare ? COLORS[n.membership] || "#555" : "#59636e";
    const t = thumbOf(n.layer, n.channel);
    if (t) {
      gg.append("rect").attr("x", -n.s / 2).attr("y", -n.s / 2).attr("width", n.s).attr("height", n.s)
        .attr("rx", 3).attr("fill", "#e9ecef");
      const pid = `thumb-${n.id.replace(/[^\w-]/g, "_")}`;
      const pat = defs.append("pattern").attr("id", pid).attr("width", 1).attr("height", 1)
        .attr("patternContentUnits", "objectBoundingBox");
      pat.append("image").attr("href", t.url)
        .attr("width", t.kind === "fv" ? 1 : K).attr("height", 1)
        .attr("preserveAspectRatio", t.kind === "fv" ? "none" : "xMinYMin meet");
      gg.append("rect").attr("x", -n.s / 2).attr("y", -n.s / 2).attr("width", n.s).attr("height", n.s)
        .attr("rx", 3).attr("fill", `url(#${pid})`);
      gg.append("rect").attr("class", "frame").attr("x", -n.s / 2).attr("y", -n.s / 2)
        .attr("width", n.s).attr("height", n.s).attr("rx", 3)
        .attr("fill", "none").attr("stroke", stroke).attr("stroke-width", compare ? 3 : 1.5);
    } else {
      gg.append("circle").attr("class", "frame").attr("r", n.s / 2)
        .attr("fill", compare ? COLORS[n.membership] || "#b7c0ca" : "#b7c0ca").attr("stroke", stroke);
    }
    gg.append("text").attr("y", n.s / 2 + 11).attr("text-anchor", "middle").attr("fill", "#3c4550")
      .attr("font-size", 10).attr("paint-order", "stroke").attr("stroke", "#fff").attr("stroke-width", 3)
      .text(n.channel);
    const counts = compare
      ? `a: ${n.count_a ?? 0}, b: ${n.count_b ?? 0} images (${n.membership})`
      : `${n.count} of ${info.n_images ?? "?"} images (${pct(n.fraction)})`;
    const mean = compare ? `a ${fmt(n.mean_a)}, b ${fmt(n.mean_b)}` : fmt(n.mean);
    gg.append("title").text(`${n.id}\n${counts}\nmean activation ${mean}`);
  });
  if (state.detail) svg.select(`g.node[data-node="${state.detail}"]`).classed("selected", true);

  box.replaceChildren(svg.node());
}

function highlight(svg, id, preds, succs) {
  if (!id) {
    svg.selectAll(".node, .edge").classed("faded", false).classed("active", false).classed("focus", false);
    return;
  }
  const walk = (start, nbrs) => {
    const seen = new Set(), stack = [start];
    while (stack.length) {
      for (const m of nbrs.get(stack.pop()) || []) if (!seen.has(m)) { seen.add(m); stack.push(m); }
    }
    return seen;
  };
  const up = walk(id, preds), down = walk(id, succs);
  const on = new Set([id, ...up, ...down]);
  svg.selectAll(".node").classed("faded", (n) => !on.has(n.id)).classed("focus", (n) => n.id === id);
  svg.selectAll(".edge").each(function (e) {
    const act = ((e.target === id || up.has(e.target)) && up.has(e.source))
      || ((e.source === id || down.has(e.source)) && down.has(e.target));
    d3.select(this).classed("active", act).classed("faded", !act);
  });
}

function renderGraphTitle(g, info, compare) {
  const t = $("#graph-title");
  const c = classByName(state.selected);
  const sub = compare
    ? `${g.nodes.length} units, ${g.links.length} edges`
    : `${c?.n_images ?? info.n_images} images · accuracy ${pct(c?.accuracy)} · ${g.nodes.length} units, ${g.links.length} edges`;
  t.replaceChildren(document.createTextNode(compare ? `${state.selected} vs ${state.compareWith}` : state.selected),
    el("span", { class: "sub", text: sub }));
}

function renderLegend(compare) {
  const lg = $("#legend");
  if (!compare) {
    lg.replaceChildren(el("span", { class: "note", text:
      "Rows: layers, input at the bottom. Node size: fraction of the class's images where the unit is selected (the run's default selection, Summit's mass0.03); " +
      "edge width: influence count. Hover a node to trace its paths, click it for details." }));
    return;
  }
  const key = (m, label) => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = COLORS[m];
    return el("span", { class: "key", "data-membership": m }, sw, label);
  };
  lg.replaceChildren(key("a", `only ${state.selected}`), key("b", `only ${state.compareWith}`), key("both", "both"));
}

// ---------------------------------------------------------------- downloads
async function inlinedSvg() {
  const svg = $("#graph svg");
  if (!svg) throw new Error("no graph to download yet: pick a class");
  const clone = svg.cloneNode(true);
  clone.querySelectorAll(".faded, .active, .focus").forEach((n) => n.classList.remove("faded", "active", "focus"));
  const cache = new Map();
  const toData = (url) => {
    if (!cache.has(url)) {
      cache.set(url, fetch(url).then((r) => r.blob()).then((b) => new Promise((res) => {
        const fr = new FileReader();
        fr.onload = () => res(fr.result);
        fr.readAsDataURL(b);
      })));
    }
    return cache.get(url);
  };
  await Promise.all([...clone.querySelectorAll("image")].map(async (im) => {
    im.setAttribute("href", await toData(im.getAttribute("href")));
  }));
  return { text: new XMLSerializer().serializeToString(clone), w: +svg.getAttribute("width"), h: +svg.getAttribute("height") };
}

function baseName() {
  return `summit-${state.selected}${state.compare && state.compareWith ? `-vs-${state.compareWith}` : ""}`;
}

function downloadJson() {
  if (!state.selected) return showError(new Error("pick a class first"));
  const q = graphQuery();
  if (state.compare && state.compareWith) q.set("compare", state.compareWith);
  const a = el("a", { href: `/api/export/${encodeURIComponent(state.selected)}.json?${q}`, download: `${baseName()}.json` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function downloadSvg() {
  const { text } = await inlinedSvg();
  download(new Blob([text], { type: "image/svg+xml" }), `${baseName()}.svg`);
}

async function downloadPng() {
  const { text, w, h } = await inlinedSvg();
  const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
  try {
    const img = new Image();
    await new Promise((res, rej) => { img.onload = res; img.onerror = () => rej(new Error("could not render the SVG")); img.src = url; });
    const scale = 2;
    const canvas = el("canvas", { width: w * scale, height: h * scale });
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.drawImage(img, 0, 0, w, h);
    const blob = await new Promise((res) => canvas.toBlob(res, "image/png"));
    download(blob, `${baseName()}.png`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

// ---------------------------------------------------------------- channel detail
async function openChannel(layer, channel) {
  const id = `${layer}:${channel}`;
  state.detail = id;
  writeHash();
  d3.selectAll("#graph g.node").classed("selected", (n) => n.id === id);
  document.querySelectorAll(".unit").forEach((u) => u.classList.toggle("selected", u.dataset.node === id));
  const panel = $("#channel-detail");
  panel.dataset.node = id;
  let d;
  try {
    d = await api(`/api/channel/${encodeURIComponent(layer)}/${channel}`);
  } catch (err) {
    showError(err);
    return;
  }
  if (state.detail !== id) return;
  const close = el("button", { title: "close", text: "×", onclick: () => {
    state.detail = null;
    panel.dataset.node = "";
    panel.replaceChildren(el("p", { class: "empty", text: "Click a graph node or a unit." }));
    writeHash();
  } });
  const head = el("div", { class: "detail-head" }, el("h3", { text: id }),
    el("span", { class: "note", text: `unit ${channel} of ${layer}` }), close);

  const fv = d.has_featurevis
    ? el("img", { class: "fv-img", id: "detail-featurevis", src: d.featurevis_url, alt: `feature visualization of ${id}` })
    : el("p", { class: "note", text: "Not rendered yet (summit render --run DIR)." });

  const exBox = el("div", { class: "examples", id: "detail-examples" });
  d.examples.forEach((r, i) => {
    const crop = cropHtml(d.examples_url, i, null);
    exBox.append(el("div", { class: "example", title: `${r.image}\nactivation ${r.value.toFixed(2)}` },
      crop, el("span", { text: state.classes[r.class]?.name ?? r.class })));
  });

  const stats = el("table", { class: "stats-table" },
    el("tr", {}, el("td", { text: "selected in" }), el("td", { text: `${d.count} of ${d.n_images} images` })),
    el("tr", {}, el("td", { text: "mean activation (spatial max)" }), el("td", { text: fmt(d.mean_activation) })));

  const maxFrac = d3.max(d.top_classes, (c) => c.fraction) || 1;
  const tops = el("ul", { class: "top-classes", id: "detail-top-classes" }, ...d.top_classes.map((c) => {
    const bar = el("div", { class: "bar" }, el("span"));
    bar.firstChild.style.width = `${(100 * c.fraction) / maxFrac}%`;
    const li = el("li", { "data-class": c.name, title: `mean activation ${fmt(c.mean)}`, onclick: () => selectClass(c.name) },
      el("span", { text: c.name }), el("span", { class: "note", text: `${c.count} (${pct(c.fraction)})` }), bar);
    li.classList.toggle("current", c.name === state.selected || (state.compare && c.name === state.compareWith));
    return li;
  }));

  panel.replaceChildren(head,
    el("h2", { text: "Feature visualization" }), fv,
    el("h2", { text: "Dataset examples" }),
    d.examples.length ? exBox : el("p", { class: "note", text: "No dataset examples stored." }),
    el("h2", { text: "Statistics" }), stats,
    el("h2", { text: "Top classes" }),
    d.top_classes.length ? tops : el("p", { class: "note", text: "Never in any image's top-k." }));
}

// ---------------------------------------------------------------- unit browser
async function loadUnits() {
  const layer = state.layer || state.meta.layers[0].name;
  state.layer = layer;
  $("#layer-select").value = layer;
  writeHash();
  let d;
  try {
    d = await api(`/api/layer/${encodeURIComponent(layer)}`);
  } catch (err) {
    showError(err);
    return;
  }
  if (state.layer !== layer) return;
  state.units = d;
  renderUnits();
}

function renderUnits() {
  const d = state.units;
  if (!d) return;
  let units = d.units.slice();
  if ($("#unit-active").checked) units = units.filter((u) => u.count > 0);
  if ($("#unit-sort").value === "count") units.sort((a, b) => b.count - a.count || a.channel - b.channel);
  const grid = $("#unit-grid");
  grid.dataset.layer = d.layer;
  grid.replaceChildren(...units.map((u) => {
    const id = `${d.layer}:${u.channel}`;
    const top = u.top_classes.map((c) => `${c.name} (${c.count})`).join(", ");
    const div = el("div", { class: "unit", "data-node": id, title: `${id}\ntop classes: ${top || "none"}`,
      onclick: () => openChannel(d.layer, u.channel) },
    thumbHtml(d.layer, u.channel, 72),
    el("div", { class: "cap" }, el("b", { text: `#${u.channel}` }), el("span", { text: u.count })),
    el("div", { class: "top", text: u.top_classes[0]?.name ?? "–" }));
    div.classList.toggle("selected", id === state.detail);
    return div;
  }));
  const active = d.units.filter((u) => u.count > 0).length;
  $("#unit-summary").textContent = `${d.channels} units, ${active} ever in an image's top-k`;
}

// ---------------------------------------------------------------- tabs + wiring
function showTab(tab) {
  state.tab = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $("#graph-view").hidden = tab !== "graph";
  $("#units-view").hidden = tab !== "units";
  if (tab === "units" && (!state.units || state.units.layer !== state.layer)) loadUnits();
  writeHash();
}

function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function wire() {
  $("#class-search").addEventListener("input", renderClassList);
  $("#class-sort").addEventListener("change", renderClassList);
  $("#class-search").addEventListener("keydown", (ev) => {
    const first = $("#class-list li[data-class]");
    if (ev.key === "Enter" && first) selectClass(first.dataset.class);
  });
  const refetch = debounce(loadGraph, 150);
  for (const [id, key] of [["top-n", "top_n"], ["edges-per-node", "edges_per_node"]]) {
    const input = $(`#${id}`);
    input.value = state.params[key];
    $(`#${id}-value`).textContent = input.value;
    input.addEventListener("input", () => {
      state.params[key] = +input.value;
      $(`#${id}-value`).textContent = input.value;
      refetch();
    });
  }
  const rule = $("#graph-method");  // top N and edges / unit apply to the top N rule
  rule.value = state.params.method;
  rule.addEventListener("change", () => { state.params.method = rule.value; refetch(); });
  $("#show-ubiquitous").checked = state.params.ubiquitous === "show";
  $("#show-ubiquitous").addEventListener("change", (ev) => {
    state.params.ubiquitous = ev.target.checked ? "show" : "hide";
    refetch();
  });
  const sel = $("#compare-select");
  sel.replaceChildren(...state.classes.map((c) => el("option", { value: c.name, text: c.name })));
  $("#compare-toggle").checked = state.compare;
  sel.disabled = !state.compare;
  if (state.compareWith) sel.value = state.compareWith;
  $("#compare-toggle").addEventListener("change", (ev) => {
    state.compare = ev.target.checked;
    sel.disabled = !state.compare;
    if (state.compare && (!sel.value || sel.value === state.selected)) {
      sel.value = state.classes.find((c) => c.name !== state.selected)?.name ?? "";
    }
    state.compareWith = state.compare ? sel.value : null;
    renderClassList();
    markEmbedding();
    loadGraph();
  });
  sel.addEventListener("change", () => {
    state.compareWith = sel.value;
    renderClassList();
    markEmbedding();
    loadGraph();
  });
  $("#download-json").addEventListener("click", downloadJson);
  $("#download-svg").addEventListener("click", () => downloadSvg().catch(showError));
  $("#download-png").addEventListener("click", () => downloadPng().catch(showError));
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#layer-select").replaceChildren(...state.meta.layers.map((l) =>
    el("option", { value: l.name, text: `${l.name} (${l.channels})` })));
  $("#layer-select").addEventListener("change", (ev) => { state.layer = ev.target.value; loadUnits(); });
  $("#unit-sort").addEventListener("change", renderUnits);
  $("#unit-active").addEventListener("change", renderUnits);
  window.addEventListener("resize", debounce(() => state.graph && drawGraph(state.graph), 200));
}

async function main() {
  try {
    const [meta, cls] = await Promise.all([api("/api/meta"), api("/api/classes")]);
    state.meta = meta;
    state.classes = cls.classes;
    state.fv = Object.fromEntries(Object.entries(meta.featurevis).map(([l, chs]) => [l, new Set(chs)]));
  } catch (err) {
    showError(err);
    return;
  }
  const m = state.meta;
  $("#run-info").textContent = `${m.model} (${m.weights}) · ${m.dataset.n_images} images · ` +
    `${m.dataset.n_classes} classes · ${m.layers.length} layers`;
  const h = readHash();
  wire();
  renderClassList();
  renderEmbedding();
  const start = classByName(h.cls) ? h.cls : $("#class-list li[data-class]")?.dataset.class;
  if (start) selectClass(start);
  if (h.tab === "units") showTab("units");
  const unit = /^(.+):(\d+)$/.exec(h.unit || "");
  if (unit) openChannel(unit[1], +unit[2]);
  document.body.dataset.ready = "1";
}

main();
