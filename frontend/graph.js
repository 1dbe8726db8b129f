// Attribution graph view: one row per layer (input at the bottom), nodes drawn as thumbnails,
// barycentric row order, zoom/pan and fit, a hover popover with the unit's feature vis and
// dataset examples (as Summit), diversity images switched by the pointer's position over a
// node, a client-side count filter, and the legend. `layoutGraph`, `graphContent`, `legendGroup`
// and `ruleText` are shared with the figure export (export.js), so screen and figure agree.

import { api, examplesUrl, showError } from "./api.js";
import { $, cropHtml, debounce, el, fmt, pct } from "./dom.js";
import { actions, classByName, classLabel, diversityOf, ruleParams, state, thumbOf, writeHash } from "./state.js";
import { COLORS, RUN_MEMBERSHIP, RUN_NAMES } from "./compare.js";
import { PART_MEMBERSHIP, PART_NAMES, diffView, graphPart, imagesGraphUrl, imagesHeading, imagesSub } from "./mistakes.js";

const ROW_H = 100, LABEL_W = 104, PAD = 16, NODE_MIN = 14, NODE_MAX = 58, GAP = 16;
/** The vendored font (style.css; embedded in figures), so screen and figure look alike. */
export const FONT = "'Summit Sans', 'DejaVu Sans', system-ui, sans-serif";
const MUTED = "#515b66", FAINT = "#9aa3ad", EDGE = "#8c96a1";

let view = null;  // {svg, zoom, L, fitted}: the drawn graph; fitted: the last fit mode unless zoomed by hand
let pendingZoom = null;  // [k, x, y] from the address, applied to the next drawing instead of a fit

/** Zoom the next drawn graph to [k, x, y] (a link's `zoom=`); null: fit it as usual. */
export function restoreZoom(z) {
  pendingZoom = z;
  state.zoom = z;
  if (z) writeHash();
  if (z && view) applyZoom();
}

function applyZoom() {
  const [k, x, y] = pendingZoom;
  pendingZoom = null;
  view.fitted = null;
  view.svg.call(view.zoom.transform, d3.zoomIdentity.translate(x, y).scale(k));
}

const zoomToHash = debounce(() => writeHash(), 300);

/** Query parameters of the current graph rule. */
export function graphQuery() {
  const p = ruleParams();
  if (state.params.method === "topn") p.set("keep_dangling", 1);  // edges / unit = 0 keeps every unit
  return p;
}

/** The URL of the class's graph, the classes' comparison or the class's run diff, with the rule's query `q`. */
function classGraphUrl(q) {
  if (state.against) {
    q.set("class", state.selected);
    return `/api/against?${q}`;
  }
  if (state.compare && state.compareWith) {
    q.set("a", state.selected);
    q.set("b", state.compareWith);
    return `/api/compare?${q}`;
  }
  q.set("class", state.selected);
  return `/api/graph?${q}`;
}

export async function loadGraph() {
  if (!state.selected) return;
  const seq = ++state.graphSeq;
  const q = graphQuery();
  const url = imagesGraphUrl(q) ?? classGraphUrl(q);   // a view of the class's images (mistakes.js), else as before
  writeHash();
  $("#graph").classList.add("busy");
  try {
    const g = await api(url);
    if (seq !== state.graphSeq) return;
    const key = url.match(/^[^?]*|[?&](class|a|b|images)=[^&]*/g).join();
    const moved = state.graph && state.graphKey !== key;   // another class (or pair, or part of its images)
    state.graph = g;
    state.graphKey = key;
    drawGraph(g, { refit: true });
    if (moved) actions.followGraph();
  } catch (err) {
    if (seq === state.graphSeq) showError(err);
  } finally {
    if (seq === state.graphSeq) $("#graph").classList.remove("busy");
  }
}

// ---------------------------------------------------------------- layout (shared with export)
const isCompare = (g) => g.summit?.kind === "compare" || g.nodes.some((n) => n.membership);

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

/** Edge width: EDGE_MAX px times the share of the class's images whose influence passes the
 * edge (from 0; drawn at least 0.5 px); in a comparison the larger of the two classes' shares,
 * each of its own class's images, so both classes share one scale. */
export const edgeWidth = (frac) => Math.max(0.5, EDGE_MAX * frac);
/** Edge opacity: 0.75 up to 120 edges, lower for more (0.75 sqrt(120 / n), at least 0.25), so
 * the edges of a large graph stay apart instead of merging into one band. */
export const edgeOpacity = (n) => Math.max(0.25, Math.min(0.75, 0.75 * Math.sqrt(120 / Math.max(1, n))));
const EDGE_MAX = 8;

/** Geometry of a graph at 1:1 without the nodes whose count is <= hideLe (0: the filter is off;
 * PageRank graphs may hold units of count 0, reached through their edges) and without the edges
 * whose share of images is below edgeMin (0..1; 0: off): rows centred on the widest row, node size
 * by the share of images (sqrt), edge width by `edgeWidth`. */
export function layoutGraph(g, hideLe, edgeMin = 0) {
  const compare = isCompare(g);
  const countOf = (n) => (compare ? Math.max(n.count_a ?? 0, n.count_b ?? 0) : n.count);
  const fracOf = (n) => (compare ? Math.max(n.fraction_a ?? 0, n.fraction_b ?? 0) : n.fraction);
  const edgeFrac = (e) => e.fraction ?? Math.max(e.fraction_a ?? 0, e.fraction_b ?? 0);
  const kept = hideLe > 0 ? g.nodes.filter((n) => countOf(n) > hideLe) : g.nodes;
  const ids = new Set(kept.map((n) => n.id));
  const shown = g.links.filter((e) => ids.has(e.source) && ids.has(e.target));
  const links = edgeMin > 0 ? shown.filter((e) => edgeFrac(e) >= edgeMin - 1e-9) : shown;
  const layers = state.meta.layers.map((l) => l.name);
  const byLayer = d3.group(kept, (n) => n.layer);
  const rows = layers.map((l) => (byLayer.get(l) || []).slice()
    .sort((a, b) => countOf(b) - countOf(a) || a.channel - b.channel));
  const hiddenRows = layers.map((l) => g.nodes.some((n) => n.layer === l) && !byLayer.has(l));
  const preds = new Map(), succs = new Map();
  for (const e of links) {
    if (!preds.has(e.target)) preds.set(e.target, []);
    if (!succs.has(e.source)) succs.set(e.source, []);
    preds.get(e.target).push(e.source);
    succs.get(e.source).push(e.target);
  }
  orderRows(rows, preds, succs);

  const maxFrac = d3.max(kept, fracOf) || 1;
  const size = d3.scaleSqrt().domain([0, maxFrac]).range([NODE_MIN, NODE_MAX]).clamp(true);
  const slot = NODE_MAX + GAP;
  const widest = d3.max(rows, (r) => r.length) || 1;
  const width = LABEL_W + widest * slot + PAD;
  const height = layers.length * ROW_H;
  const cx = LABEL_W + (widest * slot) / 2;
  const nodes = new Map();
  rows.forEach((r, i) => {
    const y = (layers.length - 1 - i) * ROW_H + ROW_H / 2;   // input at the bottom
    r.forEach((n, j) => nodes.set(n.id, { ...n, x: cx + (j - (r.length - 1) / 2) * slot, y,
      s: size(fracOf(n)), n: countOf(n) }));
  });
  return { g, compare, layers, rows, hiddenRows, nodes, links, preds, succs, width, height, size, maxFrac,
    edgeFrac, countMax: d3.max(g.nodes, countOf) || 0, hideLe, edgeMin, edgesHidden: shown.length - links.length };
}

let drawings = 0;   // pattern ids stay unique across drawings

/** Thumbnail of a node: a square filled with a pattern holding the image (for a dataset-example
 * strip, K patches wide, so the square shows its first patch). */
function appendThumb(gg, defs, n, K, pid) {
  const t = thumbOf(n.layer, n.channel);
  if (!t) return false;
  const w = t.kind === "fv" ? 1 : K;
  defs.append("pattern").attr("id", pid).attr("class", "node-thumb").attr("width", 1).attr("height", 1)
    .attr("patternContentUnits", "objectBoundingBox")
    .append("image").attr("href", t.url).attr("width", w).attr("height", 1).attr("preserveAspectRatio", "none")
    .attr("data-kind", t.kind).attr("data-href", t.url).attr("data-width", w).attr("data-size", n.s);
  gg.attr("data-pattern", pid);
  gg.append("rect").attr("x", -n.s / 2).attr("y", -n.s / 2).attr("width", n.s).attr("height", n.s)
    .attr("fill", "#e9ecef");
  gg.append("rect").attr("class", "node-thumb").attr("x", -n.s / 2).attr("y", -n.s / 2)
    .attr("width", n.s).attr("height", n.s).attr("fill", `url(#${pid})`);
  return true;
}

/** The graph drawing at 1:1 (row bands, edges, nodes) as an SVG <g>. */
export function graphContent(L) {
  const root = d3.create("svg:g").attr("class", "content");
  const band = root.append("g").attr("class", "rows");
  L.layers.forEach((l, i) => {
    const y0 = (L.layers.length - 1 - i) * ROW_H;
    band.append("rect").attr("x", 0).attr("y", y0).attr("width", L.width).attr("height", ROW_H)
      .attr("fill", i % 2 ? "#fafbfc" : "#f3f5f8");
    band.append("text").attr("x", 12).attr("y", y0 + ROW_H / 2 + 4).attr("fill", MUTED)
      .attr("font-weight", "bold").text(l);
    if (!L.rows[i].length) {
      band.append("text").attr("class", "row-note").attr("x", LABEL_W + 8).attr("y", y0 + ROW_H / 2 + 4)
        .attr("fill", FAINT)
        .text(L.hiddenRows[i] ? `all units hidden by the count filter (≤ ${L.hideLe})` : "no unit of this layer in the graph");
    }
  });
  band.append("text").attr("x", 12).attr("y", 12).attr("fill", FAINT).attr("font-size", 9).text("output ↑");
  band.append("text").attr("x", 12).attr("y", L.height - 5).attr("fill", FAINT).attr("font-size", 9).text("input ↓");

  const linkPath = d3.linkVertical().x((p) => p[0]).y((p) => p[1]);
  root.append("g").attr("class", "edges").attr("fill", "none").selectAll("path").data(L.links).join("path")
    .attr("class", "edge")
    .attr("data-source", (e) => e.source).attr("data-target", (e) => e.target)
    .attr("d", (e) => {
      const a = L.nodes.get(e.source), b = L.nodes.get(e.target);
      return linkPath({ source: [a.x, a.y - a.s / 2], target: [b.x, b.y + b.s / 2] });
    })
    .attr("stroke", (e) => (L.compare ? COLORS[e.membership] || EDGE : EDGE))
    .attr("stroke-opacity", edgeOpacity(L.links.length))
    .attr("stroke-width", (e) => edgeWidth(L.edgeFrac(e)))
    .append("title").text((e) => `${e.source} → ${e.target}: ${edgeText(e, L)}`);

  const K = Math.max(1, state.meta.examples_k || 1);
  const info = L.g.summit?.class || {};
  const defs = root.append("defs");
  const prefix = `t${++drawings}-`;
  root.append("g").attr("class", "nodes").selectAll("g").data([...L.nodes.values()]).join("g")
    .attr("class", "node")
    .attr("data-node", (n) => n.id)
    .attr("data-count", (n) => n.n)
    .attr("data-membership", (n) => n.membership ?? null)
    .attr("transform", (n) => `translate(${n.x},${n.y})`)
    .each(function (n) {
      const gg = d3.select(this);
      const stroke = L.compare ? COLORS[n.membership] || "#555" : "#59636e";
      if (appendThumb(gg, defs, n, K, prefix + n.id.replace(/[^\w-]/g, "_"))) {
        gg.append("rect").attr("class", "frame").attr("x", -n.s / 2).attr("y", -n.s / 2)
          .attr("width", n.s).attr("height", n.s).attr("rx", 2)
          .attr("fill", "none").attr("stroke", stroke).attr("stroke-width", L.compare ? 3 : 1.5);
      } else {
        gg.append("circle").attr("class", "frame").attr("r", n.s / 2)
          .attr("fill", L.compare ? COLORS[n.membership] || "#b7c0ca" : "#b7c0ca").attr("stroke", stroke);
      }
      gg.append("text").attr("y", n.s / 2 + 11).attr("text-anchor", "middle").attr("fill", "#3c4550")
        .attr("font-size", 10).attr("paint-order", "stroke").attr("stroke", "#fff").attr("stroke-width", 3)
        .text(n.channel);
      gg.append("title").text(`${n.id}\n${nodeCounts(n, L.compare, info)}`);
    });
  return root.node();
}

/** An edge's influence count, in words. */
const edgeText = (e, L) => "influence count " + (L.compare
  ? `${compareNames.a} ${e.count_a} (${pct(e.fraction_a)}), ${compareNames.b} ${e.count_b} (${pct(e.fraction_b)})`
  : `${e.count} (${pct(e.fraction)} of the class's images)`);

/** The compared classes as the page names them (their labels), the compared runs, or the parts
 * of the class's images. */
export const compareNames = {
  get a() { return state.against ? RUN_NAMES.a : diffView() ? PART_NAMES.a : classLabel(state.selected); },
  get b() { return state.against ? RUN_NAMES.b : diffView() ? PART_NAMES.b : classLabel(state.compareWith); },
};

function nodeCounts(n, compare, info) {
  const which = diffView() ? PART_MEMBERSHIP.find(([k]) => k === n.membership)?.[1]
    : n.membership === "both" ? "both graphs" : `only ${compareNames[n.membership]}`;
  if (compare && (state.against || diffView())) {   // a diff: one class in two runs or two parts (no mean activation)
    return `${compareNames.a}: ${n.count_a ?? 0} of ${info.n_images_a ?? "?"}, ${compareNames.b}: ${n.count_b ?? 0} of ` +
      `${info.n_images_b ?? "?"} images (${which})`;
  }
  return compare
    ? `${compareNames.a}: ${n.count_a ?? 0}, ${compareNames.b}: ${n.count_b ?? 0} images (${which}); ` +
      `mean activation on each class's images: ${compareNames.a} ${fmt(n.mean_a)}, ${compareNames.b} ${fmt(n.mean_b)}`
    : `${n.count} of ${info.n_images ?? "?"} images (${pct(n.fraction)}); mean activation on the class's images ${fmt(n.mean)}`;
}

/** The legend's sections (node size, edge width and, comparing, the membership colours), each an
 * SVG <g> with the width the figure gives it. The keys are drawn at 1:1 and scaled by `k` (the graph's zoom, so
 * they match the nodes and edges on screen); the text stays at its size. */
export function legendSections(L, names, k = 1) {
  const section = (t) => {
    const g = d3.create("svg:g").attr("class", "legend").attr("font-size", 10).attr("fill", MUTED);
    g.append("text").attr("y", 10).attr("font-weight", "bold").text(t);
    return g;
  };
  const nodes = section("node size: share of images selecting the unit");
  const fracs = [...new Set([0, L.maxFrac / 4, L.maxFrac / 2, L.maxFrac].map((f) => +f.toPrecision(2)))];
  let xi = 0;
  for (const f of fracs) {
    const s = L.size(f);
    nodes.append("rect").attr("class", "size-key").attr("transform", `translate(${xi},${18 + ((NODE_MAX - s) * k) / 2}) scale(${k})`)
      .attr("width", s).attr("height", s).attr("fill", "#e9ecef").attr("stroke", "#59636e")
      .attr("vector-effect", "non-scaling-stroke");
    nodes.append("text").attr("x", xi + (s * k) / 2).attr("y", 18 + NODE_MAX * k + 12).attr("text-anchor", "middle").text(pct(f));
    xi += Math.max(s * k, 26) + 10;
  }
  const edges = section(!L.compare ? `edge width: share of the class's ${graphPart() === "all" ? "" : `${graphPart()} `}images`
    : state.against ? "edge width: share of the class's images in each run"
      : diffView() ? "edge width: share of each part's images" : "edge width: share of each class's images");
  [0.25, 0.5, 1].forEach((f, i) => {
    const x = i * 72, y = 18 + 12;
    edges.append("line").attr("class", "width-key").attr("x1", x).attr("x2", x + 36).attr("y1", y).attr("y2", y)
      .attr("transform", `translate(0,${y}) scale(1,${k}) translate(0,${-y})`)
      .attr("stroke", EDGE).attr("stroke-width", edgeWidth(f));
    edges.append("text").attr("x", x + 40).attr("y", y + 3).text(pct(f));
  });
  if (!L.links.length) edges.append("text").attr("y", 50).text("no edges");
  const out = [{ g: nodes.node(), width: Math.max(xi, 290) + 24 }, { g: edges.node(), width: L.compare || graphPart() !== "all" ? 280 : 250 }];
  if (L.compare) {
    const m = section("colour: graph membership");
    const keys = state.against ? RUN_MEMBERSHIP : diffView() ? PART_MEMBERSHIP
      : [["a", `only ${names.a}`], ["b", `only ${names.b}`], ["both", "both"]];
    keys.forEach(([key, label], i) => {
      const y = 18 + 4 + i * 16;
      m.append("rect").attr("class", "membership-key").attr("data-membership", key).attr("x", 0).attr("y", y)
        .attr("width", 12).attr("height", 12).attr("fill", COLORS[key]);
      m.append("text").attr("x", 18).attr("y", y + 10).text(label);
    });
    out.push({ g: m.node(), width: 24 + 8 * Math.max(...keys.map(([, label]) => label.length - 5)) + 40 });
  }
  return out;
}

/** The legend as one SVG <g> at 1:1 (the figure's): its sections side by side. */
export function legendGroup(L, names) {
  const g = d3.create("svg:g").attr("class", "legend-all");
  let x = 0;
  for (const s of legendSections(L, names)) {
    g.append(() => s.g).attr("transform", `translate(${x},0)`);
    x += s.width;
  }
  return g.node();
}
export const LEGEND_H = 18 + NODE_MAX + 16;

/** One line naming the graph rule and its thresholds (from the graph's `summit.settings`). */
export function ruleText(g) {
  const s = g.summit?.settings || {};
  const parts = [];
  if (s.method === "pagerank") {
    parts.push("rule: PageRank (Summit)");
    if (s.mass != null) {
      parts.push(s.mass > s.mass_start + 1e-9
        ? `mass ${share(s.mass)} (raised from ${share(s.mass_start)} until every layer has a unit and each pair of adjacent layers an edge)`
        : `mass ${share(s.mass)}`);
    } else if (s.mass_a != null) {   // a comparison: each class's graph has its own raised mass
      parts.push(`mass ${share(s.mass_a)} (${compareNames.a}), ${share(s.mass_b)} (${compareNames.b}), from ${share(s.mass_start)}`);
    }
  } else {
    parts.push(s.min_count != null ? `rule: units with count ≥ ${s.min_count}` : `rule: top ${s.top_n} units per layer`);
    parts.push(`${s.edges_per_node} strongest inputs per unit`, `edge count ≥ ${s.min_edge_count}`);
    parts.push(s.keep_dangling ? "units without edges kept" : "units without edges dropped");
  }
  if (s.selection) parts.push(`selection ${s.selection}`);
  if (s.excluded?.length) parts.push(`${s.excluded.length} ubiquitous units hidden`);
  if (state.hideLe) parts.push(`count > ${state.hideLe} shown`);
  if (state.edgeMin) parts.push(`edges of ≥ ${state.edgeMin} % of the images shown`);
  return parts.join(" · ");
}

const share = (v) => `${+(v * 100).toFixed(1)} %`;

/** The mass slider's reading: the share asked for and, once the graph of that share is drawn,
 * the share it uses (the rule raises it in 0.5 % steps); the range it raised over, [asked, used),
 * gives this same graph and is marked under the slider (#mass-override). */
export function showMass() {
  const s = state.graph?.summit?.settings || {};
  const asked = state.params.mass;
  const usedOf = s.mass != null ? [s.mass] : s.mass_a != null ? [s.mass_a, s.mass_b] : [];
  const current = Math.abs((s.mass_start ?? -1) - asked) < 1e-9 && usedOf.length;
  const used = current ? Math.max(...usedOf) : asked;
  const input = $("#mass"), band = $("#mass-override");
  input.dataset.used = current ? used : "";
  const uses = !current || used <= asked + 1e-9 ? ""
    : s.mass != null ? ` → uses ${share(used)}` : ` → uses ${share(s.mass_a)}, ${share(s.mass_b)}`;
  $("#mass-value").textContent = share(asked) + uses;
  band.hidden = !uses;
  if (!uses) return;
  const lo = +input.min / 100, hi = +input.max / 100, r = 8;   // r: half the range thumb
  const px = (v) => r + ((Math.min(v, hi) - lo) / (hi - lo)) * (input.offsetWidth - 2 * r);
  band.style.left = `${px(asked)}px`;
  band.style.width = `${Math.max(2, px(used) - px(asked))}px`;
  band.title = `every mass from ${share(asked)} to ${share(used)} gives this graph: the rule raises it ` +
    "until every layer has a unit and each pair of adjacent layers an edge";
}

// ---------------------------------------------------------------- the view
export function drawGraph(g, { refit = false } = {}) {
  if (state.figure) {
    actions.drawFigure().catch(showError);
    return;
  }
  const box = $("#graph");
  // the count filter keeps the units of the largest count: it can hide all but those, not every unit
  const top = d3.max(g.nodes, (n) => (n.count ?? Math.max(n.count_a ?? 0, n.count_b ?? 0))) || 0;
  state.hideLe = Math.min(state.hideLe, Math.max(0, top - 1));
  const L = layoutGraph(g, state.hideLe, state.edgeMin / 100);
  const names = { a: compareNames.a, b: compareNames.b };
  renderGraphTitle(g, L);
  const rule = $("#rule-settings");
  rule.textContent = rule.title = ruleText(g);
  showMass();
  const hide = $("#hide-le");
  hide.max = Math.max(0, top - 1);
  hide.disabled = top <= 1;
  hide.value = state.hideLe;
  $("#hide-le-value").textContent = state.hideLe;

  const old = view;
  const svg = d3.create("svg")
    .attr("width", box.clientWidth).attr("height", box.clientHeight)
    .attr("font-family", FONT).attr("font-size", 11)
    .attr("data-class", state.selected)
    .attr("data-compare", L.compare && !state.against && !diffView() ? state.compareWith : null)
    .attr("data-against", state.against ? "1" : null)
    .attr("data-images", state.images !== "all" ? state.images : null);
  svg.append("rect").attr("width", "100%").attr("height", "100%").attr("fill", "#fff");
  const vp = svg.append("g").attr("class", "viewport");
  vp.append(() => graphContent(L));
  wireNodes(vp, L);
  wireEdges(vp, L);
  const zoom = d3.zoom().scaleExtent([0.05, 4]).on("zoom", (ev) => {
    if (ev.sourceEvent) {   // zoomed or panned by hand: no longer fitted (kept in the address); the popover would float
      if (view) view.fitted = null;
      const t = ev.transform;
      state.zoom = [+t.k.toFixed(3), Math.round(t.x), Math.round(t.y)];
      zoomToHash();
      hidePopover();
    }
    vp.attr("transform", ev.transform);
    svg.attr("data-k", ev.transform.k.toFixed(3));
    svg.classed("tiny", ev.transform.k * 10 < LABEL_MIN_PX);   // unit numbers below 6 px are not drawn
    if (view?.svg === svg) showOverview(ev.transform);
    drawLegend(L, names, ev.transform.k);
  });
  svg.call(zoom).on("dblclick.zoom", null);
  const hadFocus = box.contains(document.activeElement);
  box.replaceChildren(svg.node());
  view = { svg, zoom, L, names, fitted: old?.fitted ?? "all", focused: old?.focused };
  if (pendingZoom) applyZoom();
  else if (refit || !old) fit("all");
  else if (view.fitted) fit(view.fitted);
  else svg.call(zoom.transform, d3.zoomTransform(old.svg.node()));
  if (state.detail) svg.select(`g.node[data-node="${state.detail}"]`).classed("selected", true);
  drawOverview();
  showOverview(d3.zoomTransform(svg.node()));
  if (hadFocus) focusGraph();   // a redraw (filter, new renders) keeps the keyboard where it was
}

const LABEL_MIN_PX = 6, OVERVIEW_W = 180, OVERVIEW_H = 150;

/** The overview (bottom right of the graph's box): the whole graph small, with the part in view
 * outlined; shown while the view holds less than the whole graph. Click or drag in it to move the
 * view there. */
function drawOverview() {
  const { svg, L } = view;
  const so = Math.min((OVERVIEW_W - 8) / L.width, (OVERVIEW_H - 8) / L.height);
  const w = L.width * so + 8, h = L.height * so + 8;
  const ov = svg.append("g").attr("class", "overview").attr("data-testid", "overview").attr("display", "none");
  ov.append("rect").attr("class", "ov-frame").attr("width", w).attr("height", h).attr("rx", 4)
    .attr("fill", "rgba(255,255,255,0.92)").attr("stroke", "#9aa3ad");
  const inner = ov.append("g").attr("transform", `translate(4,4) scale(${so})`);
  inner.append("g").selectAll("path").data(L.links).join("path")
    .attr("d", (e) => { const a = L.nodes.get(e.source), b = L.nodes.get(e.target); return `M${a.x},${a.y}L${b.x},${b.y}`; })
    .attr("stroke", "#c3cad2").attr("stroke-width", 1 / so).attr("fill", "none");
  inner.append("g").selectAll("rect").data([...L.nodes.values()]).join("rect")
    .attr("x", (n) => n.x - n.s / 2).attr("y", (n) => n.y - n.s / 2).attr("width", (n) => n.s).attr("height", (n) => n.s)
    .attr("fill", (n) => (L.compare ? COLORS[n.membership] || "#59636e" : "#59636e"));
  inner.append("rect").attr("class", "ov-view").attr("fill", "rgba(47,111,176,0.12)").attr("stroke", "#2f6fb0")
    .attr("stroke-width", 1.5 / so);
  const moveTo = (ev) => {
    const [px, py] = d3.pointer(ev, inner.node());
    view.svg.call(view.zoom.translateTo, px, py);
    view.fitted = null;
    const t = d3.zoomTransform(view.svg.node());
    state.zoom = [+t.k.toFixed(3), Math.round(t.x), Math.round(t.y)];
    zoomToHash();
    hidePopover();
  };
  // the overview's own pointer events do not reach the graph's zoom (no pan or zoom started there)
  ov.on("mousedown", (ev) => {
    ev.stopPropagation();
    moveTo(ev);
    const move = (e) => moveTo(e);
    const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }).on("wheel", (ev) => ev.stopPropagation()).on("dblclick", (ev) => ev.stopPropagation());
  view.overview = { ov, so, w, h };
}

function showOverview(t) {
  if (!view?.overview) return;
  const { ov, w, h } = view.overview;
  const node = view.svg.node(), W = node.width.baseVal.value, H = node.height.baseVal.value;
  if (!W || !H || !(t.k > 0)) {   // not laid out (another tab is shown)
    ov.attr("display", "none");
    return;
  }
  const x0 = -t.x / t.k, y0 = -t.y / t.k, x1 = (W - t.x) / t.k, y1 = (H - t.y) / t.k;
  const whole = x0 <= 1 && y0 <= 1 && x1 >= view.L.width - 1 && y1 >= view.L.height - 1;
  const fits = W > w + 40 && H > h + 40;
  ov.attr("display", whole || !fits ? "none" : null).attr("transform", `translate(${W - w - 8},${H - h - 8})`);
  const cx = Math.max(0, x0), cy = Math.max(0, y0);
  ov.select("rect.ov-view").attr("x", cx).attr("y", cy)
    .attr("width", Math.max(0, Math.min(view.L.width, x1) - cx)).attr("height", Math.max(0, Math.min(view.L.height, y1) - cy));
  ov.attr("data-view", [x0, y0, x1, y1].map((v) => Math.round(v)).join(","));
}

const LEGEND_AUTO_W = 800;
let legendShown = null;   // the legend toggle's choice (null: by the graph's width)

/** The legend toggle: shows or hides the legend (the choice holds while the page is open). */
export function toggleLegend() {
  legendShown = $("#legend").hidden;
  if (view) drawLegend(view.L, view.names, d3.zoomTransform(view.svg.node()).k);
}

/** The legend beside the graph: its sections wrap to the box's width; the keys follow the graph's
 * zoom up to 1:1 (so they match the nodes and edges on screen), the text keeps its size. */
function drawLegend(L, names, k) {
  const kk = Math.min(1, k);
  $("#zoom-level").textContent = `${Math.round(100 * k)} %`;
  const key = `${kk.toFixed(3)}|${L.compare}|${state.images}|${names.a}|${names.b}|${L.maxFrac}|${L.links.length}`;
  const box = $("#legend");
  // shown where the graph is wide enough for it beside the zoom buttons, unless toggled by hand
  box.hidden = !(legendShown ?? $("#graph").clientWidth >= LEGEND_AUTO_W);
  $("#legend-toggle").setAttribute("aria-pressed", String(!box.hidden));
  if (box.hidden || (box.dataset.key === key && box.firstChild)) return;
  box.dataset.key = key;
  box.title = k > 1 ? "legend keys at 1:1 (the graph is zoomed in further)" : "legend keys at the graph's zoom";
  box.replaceChildren(...legendSections(L, names, kk).map((sec) => {
    const svg = d3.create("svg").attr("class", "legend-svg").attr("font-family", FONT);
    svg.append(() => sec.g);
    return svg.node();
  }));
  for (const svg of box.querySelectorAll("svg")) {   // each section's own extent (its text is measured here)
    const r = svg.firstChild.getBBox();
    svg.setAttribute("viewBox", `${r.x - 1} ${r.y - 1} ${r.width + 2} ${r.height + 2}`);
    svg.setAttribute("width", r.width + 2);
    svg.setAttribute("height", r.height + 2);
  }
}

/** Zoom the drawn graph: "all" fits it whole, "width" fits its width (top aligned), "reset" is 1:1. */
export function fit(mode) {
  if (!view) return;
  const node = view.svg.node();
  const W = node.width.baseVal.value, H = node.height.baseVal.value, { width, height } = view.L;
  const k = mode === "reset" ? 1 : Math.min(1, mode === "width" ? W / width : Math.min(W / width, H / height));
  const tx = Math.max(0, (W - width * k) / 2), ty = mode === "all" ? Math.max(0, (H - height * k) / 2) : 0;
  view.svg.call(view.zoom.transform, d3.zoomIdentity.translate(tx, ty).scale(k));
  view.fitted = mode;
  if (state.zoom) {
    state.zoom = null;
    writeHash();
  }
}

/** Keep the drawing's size in step with its box (the detail panel opens and closes); a fitted
 * graph is fitted again. */
export function resizeGraph() {
  const box = $("#graph");
  const node = view?.svg.node();
  if (node?.isConnected) drawLegend(view.L, view.names, d3.zoomTransform(node).k);   // shown by the new width
  if (!node?.isConnected || (+node.getAttribute("width") === box.clientWidth && +node.getAttribute("height") === box.clientHeight)) return;
  view.svg.attr("width", box.clientWidth).attr("height", box.clientHeight);
  if (view.fitted) fit(view.fitted);
  else showOverview(d3.zoomTransform(node));
}

/** The node that takes the focus when Tab reaches the graph: the last one focused while it is
 * drawn, else the leftmost of the top row. */
function tabNode(L) {
  const last = view?.focused && L.nodes.get(view.focused);
  return last ? last.id : [...L.rows].reverse().find((r) => r.length)?.[0]?.id;
}

/** Focus the graph (its tab node); false when no graph is drawn. */
export function focusGraph() {
  const n = view && tabNode(view.L);
  const node = n && view.svg.node().querySelector(`g.node[data-node="${CSS.escape(n)}"]`);
  node?.focus();
  return !!node;
}

/** Arrow keys on a node: left and right along its row, up and down to the nearest node of the
 * next layer above or below that has units. */
function moveFocus(ev, n, L) {
  const i = L.layers.indexOf(n.layer);
  const row = (j) => L.rows[j].map((m) => L.nodes.get(m.id)).sort((a, b) => a.x - b.x);
  let to = null;
  if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
    const r = row(i), j = r.findIndex((m) => m.id === n.id) + (ev.key === "ArrowRight" ? 1 : -1);
    to = r[j];
  } else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
    const step = ev.key === "ArrowUp" ? 1 : -1;   // rows run from the input (0) up
    for (let j = i + step; j >= 0 && j < L.rows.length && !to; j += step) {
      const x = L.nodes.get(n.id).x;
      to = d3.least(row(j), (m) => Math.abs(m.x - x));
    }
  } else {
    return;
  }
  ev.preventDefault();
  if (to) view.svg.node().querySelector(`g.node[data-node="${CSS.escape(to.id)}"]`)?.focus();
}

function wireNodes(vp, L) {
  const first = tabNode(L);
  vp.selectAll("g.node")   // one tab stop for the graph; arrow keys move between its nodes
    .attr("tabindex", (n) => (n.id === first ? 0 : -1)).attr("role", "button")
    .attr("aria-label", (n) => `${n.id}: ${nodeCounts(n, L.compare, L.g.summit?.class || {})}`)
    .on("mouseenter", function (ev, n) {
      highlight(vp, n.id, L);
      showPopover(n, this);
    })
    .on("focus", function (ev, n) {
      vp.selectAll("g.node").attr("tabindex", (m) => (m.id === n.id ? 0 : -1));
      view.focused = n.id;
      highlight(vp, n.id, L);
      showPopover(n, this);
    })
    .on("mousemove", function (ev, n) { showDiversity(this, n, d3.pointer(ev, this)[0]); })
    .on("mouseleave blur", function () {
      highlight(vp, null, L);
      hidePopover();
      restoreThumb(this);
    })
    .on("click", (ev, n) => actions.openChannel(n.layer, n.channel))
    .on("keydown", (ev, n) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        actions.openChannel(n.layer, n.channel);
      } else {
        moveFocus(ev, n, L);
      }
    });
}

/** Summit's edge hover, on transparent copies of the edges 4 px wider (between the edges and the
 * nodes), so that thin edges can be hovered; not while the graph is being panned. */
function wireEdges(vp, L) {
  const paths = vp.selectAll("path.edge"), data = paths.data(), els = paths.nodes();
  const hits = d3.create("svg:g").attr("class", "edge-hits");
  vp.select("g.nodes").node().before(hits.node());
  hits.selectAll("path").data(data).join("path")
    .attr("class", "edge-hit").attr("d", (e, i) => els[i].getAttribute("d"))
    .attr("data-source", (e) => e.source).attr("data-target", (e) => e.target)
    .attr("fill", "none").attr("stroke", "transparent").attr("stroke-width", (e) => edgeWidth(L.edgeFrac(e)) + 4)
    .on("mouseenter", (ev, e) => {
      if (ev.buttons) return;
      vp.selectAll(".node").classed("faded", (n) => n.id !== e.source && n.id !== e.target).classed("focus", false);
      paths.classed("active", (f) => f === e).classed("faded", (f) => f !== e);
      showEdgePopover(e, els[data.indexOf(e)], L);
    })
    .on("mouseleave", () => {
      highlight(vp, null, L);
      hidePopover();
    });
}

function highlight(vp, id, L) {
  if (!id) {
    vp.selectAll(".node, .edge").classed("faded", false).classed("active", false).classed("focus", false);
    return;
  }
  const walk = (start, nbrs) => {
    const seen = new Set(), stack = [start];
    while (stack.length) {
      for (const m of nbrs.get(stack.pop()) || []) if (!seen.has(m)) { seen.add(m); stack.push(m); }
    }
    return seen;
  };
  const up = walk(id, L.preds), down = walk(id, L.succs);
  const on = new Set([id, ...up, ...down]);
  vp.selectAll(".node").classed("faded", (n) => !on.has(n.id)).classed("focus", (n) => n.id === id);
  vp.selectAll(".edge").each(function (e) {
    const act = ((e.target === id || up.has(e.target)) && up.has(e.source))
      || ((e.source === id || down.has(e.source)) && down.has(e.target));
    d3.select(this).classed("active", act).classed("faded", !act);
  });
}

/** The <image> inside a node's thumbnail pattern. */
const nodeImage = (nodeEl) => document.getElementById(nodeEl.dataset.pattern ?? "")?.querySelector("image");

/** Summit's diversity hover: the pointer's horizontal position over a node picks one of its
 * diversity images (left quarter: the first of four, and so on). */
function showDiversity(nodeEl, n, x) {
  const urls = diversityOf(n.layer, n.channel);
  const img = nodeImage(nodeEl);
  if (!urls.length || !img) return;
  const i = Math.max(0, Math.min(urls.length - 1, Math.floor((urls.length * (x + n.s / 2)) / n.s)));
  if (nodeEl.dataset.diversity === String(i)) return;
  nodeEl.dataset.diversity = i;
  img.setAttribute("href", urls[i]);
  img.setAttribute("width", 1);
  document.querySelectorAll("#popover .div-img").forEach((d, j) => d.classList.toggle("active", j === i));
}

function restoreThumb(nodeEl) {
  const img = nodeImage(nodeEl);
  if (!img || nodeEl.dataset.diversity === undefined) return;
  delete nodeEl.dataset.diversity;
  img.setAttribute("href", img.dataset.href);
  img.setAttribute("width", img.dataset.width);
}

// ---------------------------------------------------------------- hover popover
function showPopover(n, anchor) {
  const pop = $("#popover");
  const info = state.graph?.summit?.class || {};
  const parts = [el("div", { class: "pop-head" }, el("b", { text: n.id }),
    el("span", { class: "note", text: nodeCounts(n, !!n.membership, info) }))];
  const fv = thumbOf(n.layer, n.channel);
  const divs = diversityOf(n.layer, n.channel);
  if (fv?.kind === "fv" || divs.length) {
    const row = el("div", { class: "pop-fv" });
    if (fv?.kind === "fv") row.append(el("img", { class: "fv-main", src: fv.url, alt: `feature visualization of ${n.id}` }));
    divs.forEach((u, i) => row.append(el("img", { class: "div-img", src: u, alt: `diversity image ${i + 1}`, "data-i": i })));
    parts.push(el("div", { class: "pop-label", text: divs.length
      ? `feature visualization and ${divs.length} diversity images (move across the node to switch)`
      : "feature visualization" }), row);
  }
  if (state.meta.has_examples) {
    const K = Math.max(1, state.meta.examples_k || 1);
    const url = examplesUrl(n.layer, n.channel);
    parts.push(el("div", { class: "pop-label", text: "dataset examples (strongest activations)" }),
      el("div", { class: "pop-examples" }, ...d3.range(K).map((i) => cropHtml(url, i, 52))));
  }
  pop.replaceChildren(...parts);
  pop.dataset.node = n.id;
  pop.hidden = false;
  placePopover(pop, anchor.getBoundingClientRect(), anchor);
}

function placePopover(pop, r, self) {
  const [left, top] = popoverPlace(r, self, pop.offsetWidth, pop.offsetHeight);
  pop.style.left = `${left}px`;
  pop.style.top = `${top}px`;
}

/** Summit's edge hover: both units of the edge stay, the rest fades, and the popover shows the
 * edge's influence count and both units' dataset examples, beside the edge's middle. */
function showEdgePopover(e, path, L) {
  const pop = $("#popover");
  const K = Math.max(1, state.meta.examples_k || 1);
  const parts = [el("div", { class: "pop-head" }, el("b", { text: `${e.source} → ${e.target}` }),
    el("span", { class: "note", text: edgeText(e, L) }))];
  if (state.meta.has_examples) {
    for (const id of [e.source, e.target]) {
      const n = L.nodes.get(id);
      parts.push(el("div", { class: "pop-label", text: `${id}: dataset examples` }),
        el("div", { class: "pop-examples", "data-node": id }, ...d3.range(K).map((i) => cropHtml(examplesUrl(n.layer, n.channel), i, 52))));
    }
  }
  pop.replaceChildren(...parts);
  pop.dataset.node = `${e.source}>${e.target}`;
  pop.hidden = false;
  const m = path.getScreenCTM(), q = path.getPointAtLength(path.getTotalLength() / 2);
  const x = m.a * q.x + m.c * q.y + m.e, y = m.b * q.x + m.d * q.y + m.f;
  placePopover(pop, new DOMRect(x - 6, y - 6, 12, 12), null);
}

/** Where the popover goes (left, top in #graph-view's pixels): inside the graph's box, beside the
 * node (left or right, next to it or at the box's side, at any height), the place that covers least of the highlighted path (its nodes'
 * boxes plus 8 points along each of its edges, 64 px² each); of equal ones the nearest to the node. */
function popoverPlace(r, self, pw, ph) {
  const v = $("#graph-view").getBoundingClientRect(), gb = $("#graph").getBoundingClientRect();
  const box = [...document.querySelectorAll("#graph g.node:not(.faded)")].filter((e) => e !== self)
    .map((e) => e.getBoundingClientRect());
  const pts = [];
  for (const p of document.querySelectorAll("#graph path.edge.active")) {
    const len = p.getTotalLength(), m = p.getScreenCTM();
    for (let i = 0; i <= 8; i++) {
      const q = p.getPointAtLength((len * i) / 8);
      pts.push([m.a * q.x + m.c * q.y + m.e, m.b * q.x + m.d * q.y + m.f]);
    }
  }
  const x0 = gb.left + 4, x1 = Math.max(x0, gb.right - pw - 4);
  const y0 = ph + 8 <= gb.height ? gb.top + 4 : v.top + 4, y1 = Math.max(y0, Math.min(gb.bottom, v.bottom) - ph - 4);
  const clamp = (a, lo, hi) => Math.max(lo, Math.min(hi, a));
  // beside the node (left or right of it, at any height), where there is room for that
  const all = [r.right + 12, r.left - pw - 12, x0, x1].map((x) => clamp(x, x0, x1));
  const beside = all.filter((x) => x >= r.right + 4 || x + pw <= r.left - 4);
  const xs = beside.length ? beside : all;
  const ys = [r.top + r.height / 2 - ph / 2, r.top, r.bottom - ph, ...d3.range(y0, y1 + 1, 24), y1].map((y) => clamp(y, y0, y1));
  const cost = (x, y) => {
    let c = 0;
    for (const b of box) c += Math.max(0, Math.min(x + pw, b.right) - Math.max(x, b.left)) * Math.max(0, Math.min(y + ph, b.bottom) - Math.max(y, b.top));
    for (const [px, py] of pts) if (px > x && px < x + pw && py > y && py < y + ph) c += 64;
    // the node itself is never covered
    if (Math.min(x + pw, r.right) > Math.max(x, r.left) && Math.min(y + ph, r.bottom) > Math.max(y, r.top)) c += 1e9;
    return c;
  };
  const dist = (x, y) => Math.hypot(x + pw / 2 - (r.left + r.width / 2), y + ph / 2 - (r.top + r.height / 2));
  let best = null;
  for (const x of xs) for (const y of ys) {
    const k = [cost(x, y), dist(x, y)];
    if (!best || k[0] < best[0] || (k[0] === best[0] && k[1] < best[1])) best = [...k, x, y];
  }
  return [best[2] - v.left, best[3] - v.top];
}

export function hidePopover() {
  const pop = $("#popover");
  pop.hidden = true;
  pop.dataset.node = "";
}

/** The graph's heading: the class (or a part of its images), the two classes compared, or the
 * class in both runs. */
export function graphHeading(L) {
  const part = imagesHeading();
  if (part) return part;
  if (state.against) return `${classLabel(state.selected)}: ${RUN_NAMES.a} vs ${RUN_NAMES.b}`;
  return L.compare ? `${classLabel(state.selected)} vs ${classLabel(state.compareWith)}` : classLabel(state.selected);
}

function renderGraphTitle(g, L) {
  const t = $("#graph-title");
  const c = classByName(state.selected);
  if (state.against) {
    const ch = g.summit?.change, n = ch?.counts.nodes;
    const sub = `change ${ch ? ch.score.toFixed(3) : "?"} · ${n?.lost} lost, ${n?.gained} gained, ${n?.kept} kept units · ${g.links.length} edges`;
    const head = graphHeading(L);
    t.title = `${head} · ${sub} (change: 1 - weighted Jaccard index of the two graphs' node shares)`;
    t.replaceChildren(document.createTextNode(head), el("span", { class: "sub", text: sub }));
    return;
  }
  const shown = (L.nodes.size < g.nodes.length ? ` (${L.nodes.size} shown)` : "") +
    (L.edgesHidden ? ` (${L.links.length} edges shown)` : "");
  const part = imagesSub(g);   // a part of the class's images, or their difference
  if (part) {
    t.title = `${graphHeading(L)} · ${part}${shown}`;
    t.replaceChildren(document.createTextNode(graphHeading(L)), el("span", { class: "sub", text: part + shown }));
    return;
  }
  const sub = L.compare
    ? `${g.nodes.length} units, ${g.links.length} edges`
    : `${c?.n_images ?? g.summit?.class?.n_images} images · accuracy ${pct(c?.accuracy)} · ${g.nodes.length} units, ${g.links.length} edges`;
  const ids = L.compare ? "" : [...new Set([state.selected, c?.wnid].filter((x) => x && x !== c?.label))]
    .map((x) => `${x} · `).join("");
  t.title = `${graphHeading(L)} ${ids}${sub}${shown}`;
  t.replaceChildren(document.createTextNode(graphHeading(L)), el("span", { class: "sub", text: ids + sub + shown }));
}
