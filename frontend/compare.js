// Compare mode: a second class, the union of both graphs colored by membership, and its legend.

import { $, el } from "./dom.js";
import { actions, state } from "./state.js";
import { renderClassList } from "./sidebar.js";
import { markEmbedding } from "./embedding.js";

export const COLORS = { a: "#2f7fc1", b: "#e8771e", both: "#8a5cc2" };

export function renderLegend(compare) {
  const lg = $("#legend");
  if (!compare) {
    lg.replaceChildren(el("span", { class: "note", text:
      "Rows: layers, input at the bottom. Node size: fraction of the class's images where the unit is in the top-k; " +
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

export function wireCompare() {
  const sel = $("#compare-select");
  sel.replaceChildren(...state.classes.map((c) => el("option", { value: c.name, text: c.name })));
  $("#compare-toggle").checked = state.compare;
  sel.disabled = !state.compare;
  if (state.compareWith) sel.value = state.compareWith;
  const changed = () => {
    renderClassList();
    markEmbedding();
    actions.loadGraph();
  };
  $("#compare-toggle").addEventListener("change", (ev) => {
    state.compare = ev.target.checked;
    sel.disabled = !state.compare;
    if (state.compare && (!sel.value || sel.value === state.selected)) {
      sel.value = state.classes.find((c) => c.name !== state.selected)?.name ?? "";
    }
    state.compareWith = state.compare ? sel.value : null;
    changed();
  });
  sel.addEventListener("change", () => {
    state.compareWith = sel.value;
    changed();
  });
}
