// Channel detail panel: feature visualization, dataset examples, statistics, top classes.

import { api, showError } from "./api.js";
import { $, cropHtml, el, fmt, pct } from "./dom.js";
import { actions, state, writeHash } from "./state.js";

export async function openChannel(layer, channel) {
  const id = `${layer}:${channel}`;
  state.detail = id;
  writeHash();
  d3.selectAll("#graph g.node").classed("selected", (n) => n.id === id);
  document.querySelectorAll(".unit").forEach((u) => u.classList.toggle("selected", u.dataset.node === id));
  const panel = $("#channel-detail");
  panel.dataset.node = id;
  let d;
  try {
    d = await api(`/api/channel/${encodeURIComponent(layer)}/${channel}`);
  } catch (err) {
    showError(err);
    return;
  }
  if (state.detail !== id) return;
  const close = el("button", { title: "close", text: "×", onclick: () => {
    state.detail = null;
    panel.dataset.node = "";
    panel.replaceChildren(el("p", { class: "empty", text: "Click a graph node or a unit." }));
    writeHash();
  } });
  const head = el("div", { class: "detail-head" }, el("h3", { text: id }),
    el("span", { class: "note", text: `unit ${channel} of ${layer}` }), close);

  const fv = d.has_featurevis
    ? el("img", { class: "fv-img", id: "detail-featurevis", src: d.featurevis_url, alt: `feature visualization of ${id}` })
    : el("p", { class: "note", text: "Not rendered yet (summit render --run DIR)." });

  const exBox = el("div", { class: "examples", id: "detail-examples" });
  d.examples.forEach((r, i) => {
    const crop = cropHtml(d.examples_url, i, null);
    exBox.append(el("div", { class: "example", title: `${r.image}\nactivation ${r.value.toFixed(2)}` },
      crop, el("span", { text: state.classes[r.class]?.name ?? r.class })));
  });

  const stats = el("table", { class: "stats-table" },
    el("tr", {}, el("td", { text: "in top-k of" }), el("td", { text: `${d.count} of ${d.n_images} images` })),
    el("tr", {}, el("td", { text: "mean activation (spatial max)" }), el("td", { text: fmt(d.mean_activation) })));

  const maxFrac = d3.max(d.top_classes, (c) => c.fraction) || 1;
  const tops = el("ul", { class: "top-classes", id: "detail-top-classes" }, ...d.top_classes.map((c) => {
    const bar = el("div", { class: "bar" }, el("span"));
    bar.firstChild.style.width = `${(100 * c.fraction) / maxFrac}%`;
    const li = el("li", { "data-class": c.name, title: `mean activation ${fmt(c.mean)}`, onclick: () => actions.selectClass(c.name) },
      el("span", { text: c.name }), el("span", { class: "note", text: `${c.count} (${pct(c.fraction)})` }), bar);
    li.classList.toggle("current", c.name === state.selected || (state.compare && c.name === state.compareWith));
    return li;
  }));

  panel.replaceChildren(head,
    el("h2", { text: "Feature visualization" }), fv,
    el("h2", { text: "Dataset examples" }),
    d.examples.length ? exBox : el("p", { class: "note", text: "No dataset examples stored." }),
    el("h2", { text: "Statistics" }), stats,
    el("h2", { text: "Top classes" }),
    d.top_classes.length ? tops : el("p", { class: "note", text: "Never in any image's top-k." }));
}
