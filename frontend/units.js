// Unit browser (Microscope-style): every unit of one layer as a thumbnail (feature vis where
// rendered, else its strongest dataset-example patch, marked as such), with the number of images that select it and
// top class; sort and "active only" live in the URL hash.

import { api, showError } from "./api.js";
import { $, breakable, cropHtml, el } from "./dom.js";
import { actions, state, thumbOf, writeHash } from "./state.js";

const KIND = { fv: ["FV", "feature visualization"], ex: ["ex", "strongest dataset-example patch"] };

/** HTML thumbnail with a badge naming its kind: <img> for feature vis, a CSS crop of the first
 * dataset-example patch otherwise. */
export function thumbHtml(layer, ch, size) {
  const t = thumbOf(layer, ch);
  if (!t) return el("div", { class: "dot", text: "●", title: "nothing rendered or stored" });
  let img;
  if (t.kind === "fv") {
    img = el("img", { class: "thumb", src: t.url, alt: `${layer}:${ch}`, loading: "lazy" });
    img.style.width = img.style.height = `${size}px`;
  } else {
    img = cropHtml(t.url, 0, size);
  }
  const [badge, what] = KIND[t.kind];
  return el("div", { class: `thumb-box kind-${t.kind}`, "data-kind": t.kind, title: what }, img,
    el("span", { class: "badge", text: badge }));
}

export async function loadUnits() {
  const layer = state.layer || state.meta.layers[0].name;
  state.layer = layer;
  $("#layer-select").value = layer;
  writeHash();
  let d;
  try {
    d = await api(`/api/layer/${encodeURIComponent(layer)}`);
  } catch (err) {
    showError(err);
    return;
  }
  if (state.layer !== layer) return;
  state.units = d;
  renderUnits();
}

export function renderUnits() {
  const d = state.units;
  if (!d) return;
  let units = d.units.slice();
  if (state.unitActive) units = units.filter((u) => u.count > 0);
  if (state.unitSort === "count") units.sort((a, b) => b.count - a.count || a.channel - b.channel);
  const grid = $("#unit-grid");
  grid.dataset.layer = d.layer;
  grid.replaceChildren(...units.map((u) => {
    const id = `${d.layer}:${u.channel}`;
    const top = u.top_classes.map((c) => `${c.name} (${c.count})`).join(", ");
    const div = el("div", { class: "unit", "data-node": id, tabindex: 0, role: "button",
      title: `${id}\nselected in ${u.count} images\ntop classes: ${top || "none"}`,
      onclick: () => actions.openChannel(d.layer, u.channel),
      onkeydown: (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); actions.openChannel(d.layer, u.channel); }
      } },
    thumbHtml(d.layer, u.channel, 72),
    el("div", { class: "cap" }, el("b", { text: `#${u.channel}` }), el("span", { text: `${u.count} img` })),
    // the whole name, wrapping after its underscores (not cut to "099…")
    el("div", { class: "top" }, "top class: ", u.top_classes[0] ? breakable(u.top_classes[0].name) : "–"));
    div.classList.toggle("selected", id === state.detail);
    return div;
  }));
  const active = d.units.filter((u) => u.count > 0).length;
  const n = state.fv[d.layer]?.size ?? 0;
  $("#unit-summary").textContent = `${d.channels} units, ${active} ever selected (${state.meta.default_selection}) · ` +
    `thumbnails: FV = feature visualization (${n} rendered), ex = strongest dataset-example patch`;
}

export function wireUnits() {
  $("#layer-select").replaceChildren(...state.meta.layers.map((l) =>
    el("option", { value: l.name, text: `${l.name} (${l.channels})` })));
  $("#layer-select").addEventListener("change", (ev) => { state.layer = ev.target.value; loadUnits(); });
  $("#unit-sort").value = state.unitSort;
  $("#unit-active").checked = state.unitActive;
  $("#unit-sort").addEventListener("change", (ev) => { state.unitSort = ev.target.value; writeHash(); renderUnits(); });
  $("#unit-active").addEventListener("change", (ev) => { state.unitActive = ev.target.checked; writeHash(); renderUnits(); });
}
