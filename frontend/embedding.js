// Class embedding: 2-D scatter of the classes, colored by accuracy; click a point to pick it.

import { api } from "./api.js";
import { $, el, pct } from "./dom.js";
import { actions, state } from "./state.js";

export async function renderEmbedding() {
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
    .on("click", (ev, d) => actions.selectClass(d.name))
    .append("title").text((d) => `${d.name} (${d.n_images} images, accuracy ${pct(acc.get(d.name))})`);
  svg.append("g").attr("class", "labels");
  box.replaceChildren(svg.node());
  box._scales = { x, y, pts };
  markEmbedding();
}

/** Mark the selected and compared classes (ring and label). */
export function markEmbedding() {
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
