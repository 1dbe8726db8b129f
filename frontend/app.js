// Summit UI entry point: loads the run's metadata, wires the views together, restores the URL hash.
// Views are ES modules (sidebar, embedding, graph, detail, units, compare, export); D3 v7 is the
// global `d3` loaded from /static/vendor.

import { api, showError } from "./api.js";
import { $, debounce } from "./dom.js";
import { actions, classByName, readHash, state, writeHash } from "./state.js";
import { renderClassList, wireSidebar } from "./sidebar.js";
import { markEmbedding, renderEmbedding } from "./embedding.js";
import { drawGraph, loadGraph } from "./graph.js";
import { openChannel } from "./detail.js";
import { loadUnits, wireUnits } from "./units.js";
import { wireCompare } from "./compare.js";
import { wireExport } from "./export.js";

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

function showTab(tab) {
  state.tab = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $("#graph-view").hidden = tab !== "graph";
  $("#units-view").hidden = tab !== "units";
  if (tab === "units" && (!state.units || state.units.layer !== state.layer)) loadUnits();
  writeHash();
}

Object.assign(actions, { selectClass, openChannel, loadGraph, showTab });

function wireGraphControls() {
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
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
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
  wireSidebar();
  wireGraphControls();
  wireCompare();
  wireExport();
  wireUnits();
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
