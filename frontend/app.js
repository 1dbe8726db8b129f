// Summit UI entry point: loads the run's metadata, wires the views together, restores the URL
// hash and keeps the feature visualizations current. Views are ES modules (sidebar, embedding,
// graph, detail, units, compare, export, mistakes); D3 v7 is the global `d3` from /static/vendor.

import { api, showError } from "./api.js";
import { $, debounce, el } from "./dom.js";
import { actions, blocksUrl, classByName, hasBlocks, pushHistory, readHash, setFeaturevis, state, writeHash } from "./state.js";
import { loadSimilarity, renderClassList, wireSidebar } from "./sidebar.js";
import { markEmbedding, renderEmbedding, wireEmbedding } from "./embedding.js";
import { drawGraph, fit, focusGraph, hidePopover, loadGraph, resizeGraph, restoreZoom, showMass, toggleLegend } from "./graph.js";
import { closeChannel, followGraph, openChannel } from "./detail.js";
import { loadUnits, renderUnits, wireUnits } from "./units.js";
import { runText, syncCompare, wireCompare } from "./compare.js";
import { drawFigure, setFigureMode, wireExport } from "./export.js";
import { loadMistakenFor, wireMistakes } from "./mistakes.js";

const POLL_MS = 15000;

/** Show a class's graph; `push`: a history entry for the view left (Back returns to it). */
function selectClass(name, push = true) {
  if (push && state.selected && name !== state.selected) pushHistory();
  state.zoom = null;
  if (state.compare && state.selected && name !== state.selected && state.compareWith === name) {
    state.compareWith = state.selected;        // swap instead of comparing a class with itself
    $("#compare-select").value = state.compareWith;
  }
  state.selected = name;
  if (hasBlocks()) $("#nav-blocks").href = blocksUrl({ pick: name });
  loadGraph();            // requests first, then the DOM work while they run
  loadSimilarity();
  loadMistakenFor();
  renderClassList();
  $("#class-list").scrollTop = 0;   // the list starts at the classes most like the new one (as Summit)
  markEmbedding();
  showTab("graph");
}

/** First class shown: a well-classified one (within 10 points of the best accuracy, the one
 * with most images), not merely the largest. */
function startClass() {
  const scored = state.classes.filter((c) => c.accuracy != null && c.n_images > 0);
  const pool = scored.length ? scored.filter((c) => c.accuracy >= d3.max(scored, (c) => c.accuracy) - 0.1) : state.classes;
  return pool.slice().sort((a, b) => b.n_images - a.n_images || (a.name < b.name ? -1 : 1))[0]?.name;
}

function showTab(tab) {
  state.tab = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  $("#graph-view").hidden = tab !== "graph";
  $("#units-view").hidden = tab !== "units";
  if (tab === "units" && (!state.units || state.units.layer !== state.layer)) loadUnits();
  writeHash();
}

const redrawGraph = () => state.graph && drawGraph(state.graph);
Object.assign(actions, { selectClass, openChannel, followGraph, loadGraph, drawFigure });

function showRuleControls() {
  const topn = state.params.method === "topn";
  document.querySelectorAll(".topn-only").forEach((e) => { e.hidden = !topn; });
  document.querySelectorAll(".pagerank-only").forEach((e) => { e.hidden = topn; });
}

/** The controls showing `state` (at start, and when the address changes). */
function syncControls() {
  $("#method").value = state.params.method;
  $("#selection").value = state.params.selection;
  $("#ubiquitous").checked = state.params.ubiquitous;
  $("#mass").value = state.params.mass * 100;
  for (const [id, key] of [["top-n", "top_n"], ["edges-per-node", "edges_per_node"]]) {
    $(`#${id}`).value = state.params[key];
    $(`#${id}-value`).textContent = state.params[key];
  }
  $("#hide-le").value = state.hideLe;
  $("#hide-le-value").textContent = state.hideLe;
  $("#edge-min").value = state.edgeMin;
  $("#edge-min-value").textContent = `${state.edgeMin} %`;
  $("#class-sort").value = state.classSort;
  $("#sim-layer").value = state.simLayer;
  $("#unit-sort").value = state.unitSort;
  $("#unit-active").checked = state.unitActive;
  syncCompare();
  showRuleControls();
  showMass();
}

/** The page follows its address: a pasted link or Back / Forward is read as a reload reads it. */
function applyHash() {
  const h = readHash(), zoom = state.zoom;
  syncControls();
  renderEmbedding();
  selectClass(classByName(h.cls) ? h.cls : state.selected, false);
  restoreZoom(zoom);
  showTab(h.tab === "units" ? "units" : "graph");
  if (h.unit) openUnit(h.unit);
  else if (state.detail) closeChannel();
}

/** The graph again under a new rule (and, comparing runs, the classes' change scores under it). */
function reload() {
  loadGraph();
  if (state.meta.against) renderClassList();
}

function wireGraphControls() {
  const sel = $("#selection");
  sel.replaceChildren(el("option", { value: "", text: `${state.meta.default_selection} (default)` }),
    ...state.meta.selections.map((s) => el("option", { value: s, text: s })));
  const onRule = (key, value) => { state.params[key] = value; showRuleControls(); reload(); };
  $("#method").addEventListener("change", (ev) => onRule("method", ev.target.value));
  sel.addEventListener("change", (ev) => onRule("selection", ev.target.value));
  $("#ubiquitous").addEventListener("change", (ev) => onRule("ubiquitous", ev.target.checked));
  showRuleControls();
  const refetch = debounce(reload, 150);
  const mass = $("#mass");
  mass.addEventListener("input", () => {
    state.params.mass = Math.round(+mass.value * 10) / 1000;
    showMass();
    refetch();
  });
  for (const [id, key] of [["top-n", "top_n"], ["edges-per-node", "edges_per_node"]]) {
    const input = $(`#${id}`);
    input.addEventListener("input", () => {
      state.params[key] = +input.value;
      $(`#${id}-value`).textContent = input.value;
      refetch();
    });
  }
  $("#hide-le").addEventListener("input", (ev) => {
    state.hideLe = +ev.target.value;
    $("#hide-le-value").textContent = state.hideLe;
    writeHash();
    redrawGraph();
  });
  $("#edge-min").addEventListener("input", (ev) => {
    state.edgeMin = +ev.target.value;
    $("#edge-min-value").textContent = `${state.edgeMin} %`;
    writeHash();
    redrawGraph();
  });
  $("#zoom-fit").addEventListener("click", () => fit("all"));
  $("#zoom-width").addEventListener("click", () => fit("width"));
  $("#zoom-reset").addEventListener("click", () => fit("reset"));
  $("#legend-toggle").addEventListener("click", toggleLegend);
  $("#skip-graph").addEventListener("click", () => {
    if (state.tab !== "graph") showTab("graph");
    focusGraph();
  });
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  new ResizeObserver(debounce(resizeGraph, 50)).observe($("#graph"));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !state.figure && state.detail && !ev.target.closest?.("#search-box")) closeChannel();
  });
  $("#graph").addEventListener("mouseleave", hidePopover);
}

let fvSeq = 0;   // a poll and a focus refresh may overlap: only the newest answer counts

/** Pick up feature visualizations rendered while the page is open (poll and on focus). */
async function refreshFeaturevis() {
  const my = ++fvSeq;
  let listing;
  try {
    listing = await api("/api/featurevis");
  } catch {
    return;   // the server may be restarting; the next poll tries again
  }
  if (my !== fvSeq || !setFeaturevis(listing)) return;
  redrawGraph();
  renderUnits();
  openUnit(state.detail);
}

/** Open the detail panel of a "layer:channel" id (nothing for a null or malformed one). */
function openUnit(id) {
  const m = /^(.+):(\d+)$/.exec(id || "");
  if (m) openChannel(m[1], +m[2]);
}

async function main() {
  try {
    const [meta, cls, fv] = await Promise.all([api("/api/meta"), api("/api/classes"), api("/api/featurevis")]);
    state.meta = meta;
    state.classes = cls.classes;
    setFeaturevis(fv);
  } catch (err) {
    showError(err);
    return;
  }
  const m = state.meta;
  const runs = m.against;
  $("#run-info").textContent = (runs ? `run A: ${runText(runs.a)} vs run B: ${runText(runs.b)} · ${m.model}` : `${m.model} (${m.weights})`) +
    ` · ${m.dataset.n_images} images · ${m.dataset.n_classes} classes · ${m.layers.length} layers`;
  if (runs) $("#run-info").title = `run A: ${runs.a.path}\nrun B: ${runs.b.path}`;
  if (hasBlocks()) $("#nav-blocks").hidden = false;
  const h = readHash(), zoom = state.zoom;
  wireSidebar(renderEmbedding, markEmbedding);
  wireEmbedding();
  wireGraphControls();
  wireCompare();
  wireMistakes(reload);
  let embeddingAsked = false;   // figure mode (`summit figure`) asks for no embedding: on leaving it
  const showEmbedding = () => { if (!embeddingAsked) { embeddingAsked = true; renderEmbedding(); } };
  wireExport(() => { redrawGraph(); showEmbedding(); });
  wireUnits();
  if (state.figure) setFigureMode(true);
  syncControls();
  if (!state.figure) showEmbedding();
  selectClass(classByName(h.cls) ? h.cls : startClass(), false);
  restoreZoom(zoom);
  if (h.tab === "units") showTab("units");
  openUnit(h.unit);
  setInterval(() => { if (!document.hidden) refreshFeaturevis(); }, POLL_MS);
  window.addEventListener("focus", refreshFeaturevis);
  window.addEventListener("hashchange", applyHash);
  document.body.dataset.ready = "1";
}

main();
