// Application state shared by the views, its URL-hash form, and the actions views may call.

import { diversityUrl, examplesUrl, fvUrl } from "./api.js";

/** The server's graph defaults (graph.options.DEFAULTS, sent in /api/meta): the one source of them. */
export const graphDefaults = () => state.meta.graph_defaults;

export const state = {
  meta: null,
  classes: [],
  fv: {},                       // layer -> Set of channels with a rendered feature vis
  div: {},                      // layer -> Map channel -> number of diversity images
  fvStamp: "0",                 // changes when `summit render` adds images (cache-busting)
  selected: null,               // class name
  compare: false,
  compareWith: null,
  images: "all",                // the class's images the graph counts: all, correct, wrong, or correct-vs-wrong (mistakes.js)
  against: false,               // run-comparison mode (a server started with --against): run A vs run B
  changes: null,                // {key: rule params, score, rank: Maps class name -> change score, place} (/api/against/classes)
  // server-side graph rule (mass: PageRank rule, top_n / edges_per_node: top-N rule); set from
  // the server's defaults and the URL hash by readHash
  params: { method: null, selection: "", ubiquitous: false, mass: null, top_n: null, edges_per_node: null },
  hideLe: 0,                    // client-side filter: hide nodes with count <= hideLe
  edgeMin: 0,                   // client-side filter: show edges of at least this % of the images (0: all)
  zoom: null,                   // [k, x, y] of a graph zoomed by hand (null: fitted)
  graph: null,
  graphKey: null,               // the class (or pair) of `graph`
  graphSeq: 0,
  detail: null,                 // "layer:channel" shown in the detail panel
  tab: "graph",
  layer: null,                  // unit browser layer
  unitSort: "count",
  unitActive: false,
  units: null,                  // /api/layer response shown in the unit browser
  simLayer: "",                 // layer for class similarity and the embedding ("" = all layers)
  classSort: "similarity",
  similarity: null,             // {class, layer, similarity: [per class index]}
  hoverClass: null,             // the class row under the pointer or focus (marked in the embedding)
  listVisible: new Set(),       // the classes whose rows are in view in the class list
  figure: false,                // figure mode: the exported figure without the UI chrome
};

/** Cross-view actions, filled in by app.js (views call them without importing each other). */
export const actions = {
  selectClass: (name) => {},
  openChannel: (layer, channel) => {},
  followGraph: () => {},
  loadGraph: () => {},
  drawFigure: async () => {},
};

/** The views of a class's images (mistakes.js; the hash's images=, absent: all). */
export const IMAGE_VIEWS = ["all", "correct", "wrong", "correct-vs-wrong"];

export const classByName = (name) => state.classes.find((c) => c.name === name);

/** How the page shows a class: its readable label ("goose", "bull mastiff"); the name (the folder:
 * "099_goose", "n01855672") stays its identifier in URLs and data attributes. */
export const classLabel = (name) => classByName(name)?.label ?? name;

/** The graph rule's parameters as the server takes them (the URL hash keeps the same ones). */
export function ruleParams() {
  const d = graphDefaults();
  const p = new URLSearchParams({ method: state.params.method });
  if (state.params.selection) p.set("selection", state.params.selection);
  if (state.params.ubiquitous === d.hide_ubiquitous) p.set("ubiquitous", state.params.ubiquitous ? "show" : "hide");
  if (state.params.method === "topn") {
    p.set("top_n", state.params.top_n);
    p.set("edges_per_node", state.params.edges_per_node);
  } else if (state.params.mass !== d.mass) {
    p.set("mass", state.params.mass);
  }
  return p;
}

/** Whether the server has the Building Blocks page (blocks.html). */
export const hasBlocks = () => (state.meta?.pages || []).includes("blocks.html");

/** A Building Blocks address: ?pick=<class> starts its picker at a class, ?image=<dataset path>
 * (with layer=) explains that image. */
export const blocksUrl = (params) => `/blocks.html?${new URLSearchParams(params)}`;

/** Thumbnail of a unit: its feature vis if rendered, else the first dataset-example patch. */
export function thumbOf(layer, ch) {
  if (state.fv[layer]?.has(ch)) return { kind: "fv", url: fvUrl(layer, ch, state.fvStamp) };
  if (state.meta.has_examples) return { kind: "ex", url: examplesUrl(layer, ch) };
  return null;
}

/** URLs of a unit's diversity images (empty when none are rendered). */
export function diversityOf(layer, ch) {
  const n = state.div[layer]?.get(ch) || 0;
  return d3.range(n).map((i) => diversityUrl(layer, ch, i, state.fvStamp));
}

/** Store /api/featurevis in the state; true when something changed. */
export function setFeaturevis(listing) {
  const stamp = String(listing.stamp ?? state.fvStamp);
  const changed = stamp !== state.fvStamp;
  state.fvStamp = stamp;
  state.fv = Object.fromEntries(Object.entries(listing.featurevis).map(([l, chs]) => [l, new Set(chs)]));
  state.div = Object.fromEntries(Object.entries(listing.diversity || {})
    .map(([l, m]) => [l, new Map(Object.entries(m).map(([c, n]) => [+c, n]))]));
  return changed;
}

export function writeHash() {
  const p = new URLSearchParams();
  if (state.selected) p.set("class", state.selected);
  if (state.images !== "all") p.set("images", state.images);
  if (state.compare && state.compareWith) p.set("compare", state.compareWith);
  if (state.meta.against && !state.against) p.set("runs", "a");
  for (const [k, v] of ruleParams()) p.set(k, v);
  if (state.hideLe) p.set("hide_le", state.hideLe);
  if (state.edgeMin) p.set("edge_min", state.edgeMin);
  if (state.simLayer) p.set("slayer", state.simLayer);
  if (state.classSort !== (state.meta.against ? "change" : "similarity")) p.set("csort", state.classSort);
  if (state.tab !== "graph") p.set("tab", state.tab);
  if (state.layer) p.set("layer", state.layer);
  if (state.unitSort !== "count") p.set("usort", state.unitSort);
  if (state.unitActive) p.set("active", "1");
  if (state.detail) p.set("unit", state.detail);
  if (state.zoom) p.set("zoom", state.zoom.join(","));
  if (state.figure) p.set("figure", "1");
  history.replaceState(null, "", `#${p}`);
}

/** A history entry for the view being left (a class pick): Back returns to it. */
export function pushHistory() {
  history.pushState(null, "", location.hash);
}

/** Read the hash into `state`; returns what needs the views (class, tab, unit). */
export function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const int = (k, lo, hi, dflt) => {
    const v = parseInt(p.get(k), 10);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  const oneOf = (k, values, dflt) => (values.includes(p.get(k)) ? p.get(k) : dflt);
  const layers = state.meta.layers.map((l) => l.name);
  const d = graphDefaults();
  state.params.top_n = int("top_n", 1, 30, d.top_n);
  state.params.edges_per_node = int("edges_per_node", 0, 10, d.edges_per_node);
  state.params.method = oneOf("method", state.meta.graph_methods, d.method);
  const mass = parseFloat(p.get("mass"));
  state.params.mass = mass > 0 && mass <= 0.5 ? Math.round(mass * 1000) / 1000 : d.mass;
  state.params.selection = oneOf("selection", state.meta.selections, d.selection || "");
  state.params.ubiquitous = p.has("ubiquitous") ? p.get("ubiquitous") === "show" : !d.hide_ubiquitous;
  state.hideLe = int("hide_le", 0, 1e9, 0);
  state.edgeMin = int("edge_min", 0, 100, 0);
  state.images = oneOf("images", IMAGE_VIEWS, "all");   // a view of the class's images: no comparison
  state.against = !!state.meta.against && p.get("runs") !== "a" && state.images === "all";
  state.compare = !state.against && state.images === "all" && !!(p.get("compare") && classByName(p.get("compare")));
  if (state.compare) state.compareWith = p.get("compare");
  const z = (p.get("zoom") || "").split(",").map(Number);
  state.zoom = z.length === 3 && z.every(Number.isFinite) && z[0] > 0 ? z : null;
  state.layer = oneOf("layer", layers, null);
  state.simLayer = oneOf("slayer", layers, "");
  const sorts = ["similarity", "accuracy", "accuracy-asc", "count", "name", ...(state.meta.against ? ["change"] : [])];
  state.classSort = oneOf("csort", sorts, state.meta.against ? "change" : "similarity");
  state.unitSort = oneOf("usort", ["count", "channel"], "count");
  state.unitActive = p.get("active") === "1";
  state.figure = p.get("figure") === "1";
  return { cls: p.get("class"), tab: p.get("tab"), unit: p.get("unit") };
}
