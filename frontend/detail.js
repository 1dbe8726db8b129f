// Channel detail panel (right): feature visualization and diversity images, dataset examples with
// their classes, statistics, the unit's top inputs (attr_channels, also outside the graph) and
// the classes whose images select it most often (the run's default selection). The panel collapses when empty.
// Comparing runs (--against), both runs' feature visualizations and dataset examples side by side.

import { api, showError } from "./api.js";
import { $, breakable, cropHtml, el, fmt, pct } from "./dom.js";
import { actions, blocksUrl, classLabel, diversityOf, hasBlocks, state, thumbOf, writeHash } from "./state.js";
import { RUN_NAMES, runText } from "./compare.js";
import { thumbHtml } from "./units.js";
import { PART_NAMES, diffView } from "./mistakes.js";

function markSelected(id) {
  d3.selectAll("#graph g.node").classed("selected", (n) => n.id === id);
  document.querySelectorAll(".unit").forEach((u) => u.classList.toggle("selected", u.dataset.node === id));
}

export function closeChannel() {
  state.detail = null;
  const panel = $("#channel-detail");
  panel.dataset.node = panel.dataset.shown = panel.dataset.cls = "";
  panel.replaceChildren();
  document.body.classList.remove("detail-open");
  markSelected(null);
  writeHash();
}

/** One unit in both runs, side by side: each run's feature visualization, its selection count
 * and its dataset examples (run A's as drawn for the plain panel; run B's from its own detail). */
function runsSideBySide(id, [[a, fvA, exA], [b]]) {
  const column = (key, d, fv, ex) => {
    const r = state.meta.against[key];
    return el("div", { class: "run-col", id: `detail-run-${key}`, "data-run": key },
      el("h4", { text: `${RUN_NAMES[key]}: ${runText(r)}`, title: r.path }),
      el("p", { class: "note", text: `selected in ${d.count} of ${d.n_images} images` }),
      ...fv, d.examples.length ? ex : el("p", { class: "note", text: "No dataset examples stored." }));
  };
  const fvB = b.featurevis_url ? [el("img", { class: "fv-img", src: b.featurevis_url, alt: `feature visualization of ${id} in run B` })]
    : [el("p", { class: "note", text: "Not rendered yet in run B (summit render --run B)." })];
  const exB = el("div", { class: "examples" }, ...b.examples.map((r, i) => {
    const c = state.classes[r.class];
    const name = c ? classLabel(c.name) : String(r.class);
    return el("div", { class: "example", title: `${r.image}\nclass ${name}\nactivation ${r.value.toFixed(2)} (run B)` },
      cropHtml(b.examples_url, i, null), breakable(name));
  }));
  return el("div", { class: "runs-side", id: "detail-runs" }, column("a", a, fvA, exA), column("b", b, fvB, exB));
}

/** The layer feeding `layer` (the previous one in the run's order). */
const inputLayer = (layer) => {
  const names = state.meta.layers.map((l) => l.name);
  return names[names.indexOf(layer) - 1] ?? null;
};

function section(title, ...body) {
  return [el("h2", { text: title }), ...body];
}

/** After the graph changed class: the open unit's panel is drawn again for the new graph (its
 * inputs, the classes marked current), or closed when the unit is not in it. */
export function followGraph() {
  const id = state.detail;
  if (!id) return;
  const n = state.graph.nodes.find((m) => m.id === id);
  if (n) openChannel(n.layer, n.channel);
  else closeChannel();
}

export async function openChannel(layer, channel) {
  const id = `${layer}:${channel}`;
  state.detail = id;
  writeHash();
  markSelected(id);
  const panel = $("#channel-detail");
  panel.dataset.node = id;
  let d, db;
  const path = `/channel/${encodeURIComponent(layer)}/${channel}`;
  try {
    [d, db] = await Promise.all([api(`/api${path}`), state.against ? api(`/api/b${path}`) : null]);
  } catch (err) {
    showError(err);
    return;
  }
  if (state.detail !== id) return;
  document.body.classList.add("detail-open");
  if (panel.dataset.shown !== id) panel.scrollTop = 0;   // a new unit starts at its top
  panel.dataset.shown = id;
  panel.dataset.cls = state.selected;
  const head = el("div", { class: "detail-head" }, el("h3", { text: id }),
    el("span", { class: "note", text: `unit ${channel} of ${layer}` }),
    el("button", { title: "close (Esc)", "aria-label": "close the channel detail", text: "×", onclick: closeChannel }));

  const t = thumbOf(layer, channel);
  const divs = diversityOf(layer, channel);
  const fv = [];
  if (t?.kind === "fv") fv.push(el("img", { class: "fv-img", id: "detail-featurevis", src: t.url, alt: `feature visualization of ${id}` }));
  if (divs.length) {
    fv.push(el("div", { class: "diversity", id: "detail-diversity" },
      ...divs.map((u, i) => el("img", { src: u, alt: `diversity image ${i + 1} of ${id}` }))));
  }
  if (!fv.length) fv.push(el("p", { class: "note", text: "Not rendered yet (summit render --run DIR [--diversity 4])." }));

  const exBox = el("div", { class: "examples", id: "detail-examples" });
  d.examples.forEach((r, i) => {
    const c = state.classes[r.class];
    const name = c ? classLabel(c.name) : String(r.class);
    const title = `${r.image}\nclass ${name}\nactivation ${r.value.toFixed(2)}`;
    const crop = cropHtml(d.examples_url, i, null);
    exBox.append(el("div", { class: "example", title: hasBlocks() ? `${title}\nclick: explain it in Building Blocks` : title },
      hasBlocks() ? el("a", { class: "to-blocks", href: blocksUrl({ image: r.image, layer }) }, crop) : crop,
      breakable(name)));
  });

  const node = state.graph?.nodes.find((n) => n.id === id);
  const info = state.graph?.summit?.class || {};
  // the correct-vs-wrong view (mistakes.js): the unit's count in each part of the class's images
  const parts = diffView() && node ? ["a", "b"].map((k) => el("tr", { class: "part-count", "data-part": PART_NAMES[k] },
    el("td", { text: `selected in the ${classLabel(state.selected)} images classified ${PART_NAMES[k] === "correct" ? "correctly" : "wrongly"}` }),
    el("td", { text: `${node[`count_${k}`]} of ${info[`n_images_${k}`]} images` }))) : [];
  const stats = el("table", { class: "stats-table" },
    el("tr", {}, el("td", { text: `selected (${state.meta.default_selection}) in` }), el("td", { text: `${d.count} of ${d.n_images} images` })),
    el("tr", {}, el("td", { text: `mean activation on all ${d.n_images} images (spatial max)` }), el("td", { text: fmt(d.mean_activation) })),
    ...parts);

  const src = inputLayer(layer);
  const attr = node?.attr_channels && src
    ? el("ul", { class: "attr-channels", id: "detail-attr" }, ...node.attr_channels.map((a) => {
      const li = el("li", { tabindex: 0, "data-node": `${src}:${a.channel}`, title: `open ${src}:${a.channel}`,
        onclick: () => actions.openChannel(src, a.channel),
        onkeydown: (ev) => { if (ev.key === "Enter") actions.openChannel(src, a.channel); } },
      thumbHtml(src, a.channel, 44), el("span", { text: `${src}:${a.channel}` }),
      el("span", { class: "note", text: `influence count ${a.count}` }));
      li.classList.toggle("in-graph", state.graph.nodes.some((n) => n.id === `${src}:${a.channel}`));
      return li;
    }))
    : null;

  // ordered by count, drawn by count (the fraction of each class's own images is in the text)
  const maxCount = d3.max(d.top_classes, (c) => c.count) || 1;
  const tops = el("ul", { class: "top-classes", id: "detail-top-classes" }, ...d.top_classes.map((c) => {
    const bar = el("div", { class: "bar" }, el("span"));
    bar.firstChild.style.width = `${(100 * c.count) / maxCount}%`;
    const li = el("li", { "data-class": c.name, tabindex: 0, title: `mean activation on this class's images ${fmt(c.mean)}`,
      onclick: () => actions.selectClass(c.name),
      onkeydown: (ev) => { if (ev.key === "Enter") actions.selectClass(c.name); } },
    breakable(classLabel(c.name), { class: "cls" }),
    el("span", { class: "note", text: `${c.count} image${c.count === 1 ? "" : "s"} · ${pct(c.fraction)} of the class` }), bar);
    li.classList.toggle("current", c.name === state.selected || (state.compare && c.name === state.compareWith));
    return li;
  }));

  const inA = db ? ` in ${RUN_NAMES.a}` : "";
  panel.replaceChildren(head,
    ...(db ? section("Run A and run B", runsSideBySide(id, [[d, fv, exBox], [db]])) : [
      ...section(divs.length ? "Feature visualization and diversity" : "Feature visualization", ...fv),
      ...section("Dataset examples",
        d.examples.length ? exBox : el("p", { class: "note", text: "No dataset examples stored." }))]),
    ...section(`Statistics${inA}`, stats),
    ...(attr ? section("Top inputs (influence, also outside the graph)", attr) : []),
    ...section(`Top classes (images that select the unit)${inA}`,
      d.top_classes.length ? tops : el("p", { class: "note", text: "Never selected in any image." })));
}
