// Compare mode: a second class; the server's union of both graphs is drawn coloured by membership
// (graph.js; its legend names both classes).

import { $ } from "./dom.js";
import { actions, state } from "./state.js";
import { renderClassList } from "./sidebar.js";
import { markEmbedding } from "./embedding.js";

/** Membership colours (Okabe-Ito blue, orange, reddish purple: distinguishable with colour blindness). */
export const COLORS = { a: "#0072b2", b: "#e69f00", both: "#cc79a7" };

/** The second-class menu, filled on first use (a thousand options cost a cold start time). */
function fillSelect(sel) {
  if (sel.options.length) return;
  sel.append(...state.classes.map((c) => new Option(c.name, c.name)));
  if (state.compareWith) sel.value = state.compareWith;
}

export function wireCompare() {
  const sel = $("#compare-select");
  if (state.compare) fillSelect(sel);
  $("#compare-toggle").checked = state.compare;
  sel.disabled = !state.compare;
  sel.addEventListener("focus", () => fillSelect(sel));
  const changed = () => {
    renderClassList();
    markEmbedding();
    actions.loadGraph();
  };
  $("#compare-toggle").addEventListener("change", (ev) => {
    fillSelect(sel);
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
