// Class embedding: a 2-D layout of the classes from their A rows (one layout per layer, or all
// layers together; the method named above it), coloured by top-1 accuracy on a colour-blind-safe
// scale (cividis). Scroll to zoom, drag to pan; class names appear when zoomed in. As Summit's: the
// class row under the pointer is marked and named, the classes whose rows are in view in the list
// are outlined, and the points move to their new places when the layer changes.

import { api } from "./api.js";
import { $, el, pct } from "./dom.js";
import { actions, classLabel, state } from "./state.js";

const W = 280, H = 240, M = 12;
const LABEL_K = 2.5, MAX_LABELS = 40;   // zoom from which labels show, and at most how many
const NO_ACC = "#b9bec4";
const MOVE_MS = 600;                    // points moving to another layer's layout
let emb = null;   // {svg, zoom, x0, y0, x, y, k, pts}
let seq = 0;

export async function renderEmbedding() {
  const box = $("#embedding");
  const layer = state.simLayer;
  const my = ++seq;
  let res;
  try {
    res = await api(`/api/embedding${layer ? `?layer=${encodeURIComponent(layer)}` : ""}`);
  } catch (err) {
    if (my === seq) box.replaceChildren(el("p", { class: "note", text: err.message }));
    emb = null;
    return;
  }
  if (my !== seq) return;
  // one layout per layer (Summit's); with "all layers" chosen for similarity, the output layer's
  const pts = res.points;
  $("#embedding-method").textContent = `${String(res.method).toUpperCase()} of A rows · ${res.layer}`;
  const x0 = d3.scaleLinear().domain(d3.extent(pts, (d) => d.x)).nice().range([M, W - M]);
  const y0 = d3.scaleLinear().domain(d3.extent(pts, (d) => d.y)).nice().range([H - M, M]);
  const r = d3.scaleSqrt().domain([0, d3.max(pts, (d) => d.n_images) || 1]).range([1.5, 5]);
  const color = d3.scaleSequential(d3.interpolateCividis).domain([0, 1]);
  const acc = new Map(state.classes.map((c) => [c.name, c.accuracy]));
  const moving = !!emb && box.contains(emb.svg.node());
  if (!moving) emb = createSvg(box);
  const { svg } = emb;
  Object.assign(emb, { x0, y0, x: x0, y: y0, k: 1, pts, moving });
  svg.call(emb.zoom.transform, d3.zoomIdentity);   // a new layout starts unzoomed
  const circles = svg.select("g.points").selectAll("circle").data(pts, (d) => d.name).join((enter) => enter.append("circle")
    .attr("cx", (d) => x0(d.x)).attr("cy", (d) => y0(d.y))
    .on("click", (ev, d) => actions.selectClass(d.name))
    .call((c) => c.append("title")))
    .attr("r", (d) => r(d.n_images))
    .attr("fill", (d) => (acc.get(d.name) == null ? NO_ACC : color(acc.get(d.name))))
    .attr("data-class", (d) => d.name);
  circles.select("title").text((d) => `${classLabel(d.name)} (${d.n_images} images, accuracy ${pct(acc.get(d.name))})`);
  renderLegend(color);
  // data-layer names the layout once its points are in place (tests and figures read it then)
  svg.attr("data-moving", moving ? "1" : null);
  const done = () => {
    if (my !== seq) return;
    emb.moving = false;
    place();
    svg.attr("data-layer", res.layer).attr("data-method", res.method ?? "").attr("data-moving", null);
  };
  if (!moving) {
    done();
    return;
  }
  svg.select("g.labels").selectAll("text").remove();
  svg.attr("data-moves", +(svg.attr("data-moves") || 0) + 1);   // animated moves so far (tests read it)
  circles.transition().duration(MOVE_MS).attr("cx", (d) => x0(d.x)).attr("cy", (d) => y0(d.y))
    .end().catch(() => {}).then(done);
}

function createSvg(box) {
  const svg = d3.create("svg").attr("viewBox", `0 0 ${W} ${H}`).attr("id", "embedding-svg");
  svg.append("rect").attr("width", W).attr("height", H).attr("fill", "#fafbfc").attr("rx", 4);
  svg.append("g").attr("class", "points");
  svg.append("g").attr("class", "labels");
  const zoom = d3.zoom().scaleExtent([1, 60]).extent([[0, 0], [W, H]]).on("zoom", (ev) => {
    emb.x = ev.transform.rescaleX(emb.x0);
    emb.y = ev.transform.rescaleY(emb.y0);
    emb.k = ev.transform.k;
    svg.attr("data-k", ev.transform.k.toFixed(2));
    if (!emb.moving) place();
  });
  svg.call(zoom).on("dblclick.zoom", null);
  box.replaceChildren(svg.node());
  return { svg, zoom };
}

function place() {
  emb.svg.selectAll("circle").interrupt().attr("cx", (d) => emb.x(d.x)).attr("cy", (d) => emb.y(d.y));
  markEmbedding();
}

/** Ring and label the selected, compared and hovered classes, outline the classes in view in the
 * list; when zoomed in, label the classes in view. Labels stay inside the drawing: a marked class
 * whose point is out of view is named at the border, with a triangle pointing towards it. */
export function markEmbedding() {
  if (!emb || emb.moving) return;
  const { svg, x, y, pts } = emb;
  const marked = (d) => d.name === state.selected || (state.compare && d.name === state.compareWith) || d.name === state.hoverClass;
  svg.selectAll("circle")
    .classed("selected", (d) => d.name === state.selected)
    .classed("compared", (d) => state.compare && d.name === state.compareWith)
    .classed("hovered", (d) => d.name === state.hoverClass)
    .classed("in-list", (d) => state.listVisible.has(d.name));
  svg.selectAll("circle.in-list, circle.selected, circle.compared, circle.hovered").raise();
  const inView = (d) => x(d.x) >= 0 && x(d.x) <= W && y(d.y) >= 0 && y(d.y) <= H;
  const shown = emb.k >= LABEL_K
    ? pts.filter((d) => !marked(d) && inView(d)).sort((a, b) => b.n_images - a.n_images).slice(0, MAX_LABELS)
    : [];
  const labels = [...pts.filter(marked), ...shown];
  const g = svg.select("g.labels").raise();
  g.selectAll("text").data(labels, (d) => d.name).join("text")
    .attr("data-class", (d) => d.name)
    .classed("marked", marked)
    .classed("hovered", (d) => d.name === state.hoverClass)
    .attr("text-anchor", "start")
    .text((d) => classLabel(d.name))
    .each(function (d) {   // above the point, moved inside the drawing where it would stick out
      const w = this.getComputedTextLength();
      const px = Math.max(0, Math.min(W, x(d.x))), py = Math.max(0, Math.min(H, y(d.y)));
      this.setAttribute("x", Math.max(2, Math.min(W - 2 - w, px - w / 2)));
      this.setAttribute("y", py - 7 < 10 ? Math.min(H - 3, py + 14) : py - 7);
    });
  // a marked class whose point is out of view: a triangle at the border, pointing towards it
  g.selectAll("path.off-view").data(pts.filter((d) => marked(d) && !inView(d)), (d) => d.name).join("path")
    .attr("class", "off-view").attr("data-class", (d) => d.name)
    .attr("d", (d) => {
      const px = Math.max(5, Math.min(W - 5, x(d.x))), py = Math.max(5, Math.min(H - 5, y(d.y)));
      const a = Math.atan2(y(d.y) - py, x(d.x) - px);
      const p = (r, t) => `${px + r * Math.cos(a + t)},${py + r * Math.sin(a + t)}`;
      return `M${p(5, 0)}L${p(5, 2.5)}L${p(5, -2.5)}Z`;
    });
  svg.attr("data-labels", labels.length);
}

function renderLegend(color) {
  const w = 150, svg = d3.create("svg").attr("width", W).attr("height", 26).attr("font-size", 9).attr("fill", "#68717d");
  const grad = svg.append("defs").append("linearGradient").attr("id", "acc-gradient");
  d3.range(0, 1.01, 0.1).forEach((t) => grad.append("stop").attr("offset", t).attr("stop-color", color(t)));
  svg.append("text").attr("x", 0).attr("y", 9).text("top-1 accuracy");
  svg.append("rect").attr("x", 70).attr("y", 1).attr("width", w - 70).attr("height", 9).attr("fill", "url(#acc-gradient)");
  svg.append("text").attr("x", 70).attr("y", 21).text("0%");
  svg.append("text").attr("x", w).attr("y", 21).attr("text-anchor", "end").text("100%");
  svg.append("circle").attr("cx", w + 16).attr("cy", 6).attr("r", 4).attr("fill", NO_ACC);
  svg.append("text").attr("x", w + 24).attr("y", 9).text("no labels");
  $("#embedding-legend").replaceChildren(svg.node());
}

export function wireEmbedding() {
  $("#embedding-reset").addEventListener("click", () => {
    if (emb) emb.svg.call(emb.zoom.transform, d3.zoomIdentity);
  });
}
