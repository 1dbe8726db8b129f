// Attribution graph: one row per layer (input at the bottom), nodes drawn as thumbnails,
// barycentric row order, hover to trace paths, click for the channel detail.

import { api, showError } from "./api.js";
import { $, el, fmt, pct } from "./dom.js";
import { actions, classByName, state, thumbOf, writeHash } from "./state.js";
import { COLORS, renderLegend } from "./compare.js";

export function graphQuery() {
  return new URLSearchParams({ top_n: state.params.top_n, edges_per_node: state.params.edges_per_node });
}

export async function loadGraph() {
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

export function drawGraph(g) {
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
    .on("click", (ev, n) => actions.openChannel(n.layer, n.channel));
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
