// Application state shared by the views, its URL-hash form, and the actions views may call.

import { examplesUrl, fvUrl } from "./api.js";

export const state = {
  meta: null,
  classes: [],
  fv: {},                       // layer -> Set of channels with a rendered feature vis
  selected: null,               // class name
  compare: false,
  compareWith: null,
  params: { top_n: 10, edges_per_node: 3 },
  graph: null,
  graphSeq: 0,
  detail: null,                 // "layer:channel" shown in the detail panel
  tab: "graph",
  layer: null,
  units: null,                  // /api/layer response shown in the unit browser
};

/** Cross-view actions, filled in by app.js (views call them without importing each other). */
export const actions = {
  selectClass: (name) => {},
  openChannel: (layer, channel) => {},
  loadGraph: () => {},
  showTab: (tab) => {},
};

export const classByName = (name) => state.classes.find((c) => c.name === name);

/** Thumbnail of a unit: its feature vis if rendered, else the first dataset-example patch. */
export function thumbOf(layer, ch) {
  if (state.fv[layer]?.has(ch)) return { kind: "fv", url: fvUrl(layer, ch) };
  if (state.meta.has_examples) return { kind: "ex", url: examplesUrl(layer, ch) };
  return null;
}

export function writeHash() {
  const p = new URLSearchParams();
  if (state.selected) p.set("class", state.selected);
  if (state.compare && state.compareWith) p.set("compare", state.compareWith);
  p.set("top_n", state.params.top_n);
  p.set("edges_per_node", state.params.edges_per_node);
  if (state.tab !== "graph") p.set("tab", state.tab);
  if (state.layer) p.set("layer", state.layer);
  if (state.detail) p.set("unit", state.detail);
  history.replaceState(null, "", `#${p}`);
}

/** Read the hash into `state`; returns what needs the views (class, tab, unit). */
export function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const int = (k, lo, hi, dflt) => {
    const v = parseInt(p.get(k), 10);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  state.params.top_n = int("top_n", 1, 30, 10);
  state.params.edges_per_node = int("edges_per_node", 0, 10, 3);
  if (p.get("compare") && classByName(p.get("compare"))) {
    state.compare = true;
    state.compareWith = p.get("compare");
  }
  const layer = p.get("layer");
  if (layer && state.meta.layers.some((l) => l.name === layer)) state.layer = layer;
  return { cls: p.get("class"), tab: p.get("tab"), unit: p.get("unit") };
}
