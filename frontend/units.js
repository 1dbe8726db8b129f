// Unit browser (Microscope-style): every unit of one layer as a thumbnail with its top-k count.

import { api, showError } from "./api.js";
import { $, cropHtml, el } from "./dom.js";
import { actions, state, thumbOf, writeHash } from "./state.js";

/** HTML thumbnail: <img> for feature vis, CSS crop of the strip's first patch otherwise. */
function thumbHtml(layer, ch, size) {
  const t = thumbOf(layer, ch);
  if (!t) return el("div", { class: "dot", text: "●" });
  if (t.kind === "fv") {
    const img = el("img", { class: "thumb", src: t.url, alt: `${layer}:${ch}`, loading: "lazy" });
    img.style.width = img.style.height = `${size}px`;
    return img;
  }
  return cropHtml(t.url, 0, size);
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
  if ($("#unit-active").checked) units = units.filter((u) => u.count > 0);
  if ($("#unit-sort").value === "count") units.sort((a, b) => b.count - a.count || a.channel - b.channel);
  const grid = $("#unit-grid");
  grid.dataset.layer = d.layer;
  grid.replaceChildren(...units.map((u) => {
    const id = `${d.layer}:${u.channel}`;
    const top = u.top_classes.map((c) => `${c.name} (${c.count})`).join(", ");
    const div = el("div", { class: "unit", "data-node": id, title: `${id}\ntop classes: ${top || "none"}`,
      onclick: () => actions.openChannel(d.layer, u.channel) },
    thumbHtml(d.layer, u.channel, 72),
    el("div", { class: "cap" }, el("b", { text: `#${u.channel}` }), el("span", { text: u.count })),
    el("div", { class: "top", text: u.top_classes[0]?.name ?? "–" }));
    div.classList.toggle("selected", id === state.detail);
    return div;
  }));
  const active = d.units.filter((u) => u.count > 0).length;
  $("#unit-summary").textContent = `${d.channels} units, ${active} ever in an image's top-k`;
}

export function wireUnits() {
  $("#layer-select").replaceChildren(...state.meta.layers.map((l) =>
    el("option", { value: l.name, text: `${l.name} (${l.channels})` })));
  $("#layer-select").addEventListener("change", (ev) => { state.layer = ev.target.value; loadUnits(); });
  $("#unit-sort").addEventListener("change", renderUnits);
  $("#unit-active").addEventListener("change", renderUnits);
}
