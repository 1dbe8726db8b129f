// A class's correctly and wrongly classified images (our feature, docs/MISTAKES.md; Summit has
// no such split): the "images" menu (all | correct | wrong | correct vs wrong, in the hash as
// images=correct|wrong|correct-vs-wrong), the graph of one part (/api/graph?images=), the
// difference of the correct images' graph and the mistakes' graph (/api/mistakes, drawn by
// graph.js in the membership colours of the class compare) and the "Mistaken for" list
// (/api/mistaken-for): the model outputs the class's mistakes were predicted as, linked to
// their graphs when they are classes of the run.

import { api, showError } from "./api.js";
import { $, el } from "./dom.js";
import { IMAGE_VIEWS, classByName, classLabel, state } from "./state.js";
import { syncCompare } from "./compare.js";
import { renderClassList } from "./sidebar.js";
import { markEmbedding } from "./embedding.js";

const VIEW_TEXT = { all: "all", correct: "correct", wrong: "wrong", "correct-vs-wrong": "correct vs wrong" };
const VIEW_TITLE = { all: "every image of the class", correct: "the graph of the class's correctly classified images only",
  wrong: "the graph of the class's misclassified images only",
  "correct-vs-wrong": "the correct images' graph against the mistakes' graph, coloured by membership" };

/** How the difference view names its sides, and its legend's membership keys. */
export const PART_NAMES = { a: "correct", b: "wrong" };
export const PART_MEMBERSHIP = [["a", "only in the correct images' graph"], ["b", "only in the mistakes' graph"],
  ["both", "in both"]];

/** The view shows the difference of the class's correct and wrong images' graphs. */
export const diffView = () => state.images === "correct-vs-wrong";
/** The part of the class's images the graph is drawn from ("all", "correct", "wrong"). */
export const graphPart = () => (state.images === "correct" || state.images === "wrong" ? state.images : "all");

/** Why a view of class `c`'s images cannot be shown (null: it can). */
export function unavailable(view, c) {
  if (view === "all" || !c) return null;
  if (!state.meta.split_correct) {
    return "this run has no correct / wrong split of its images (re-run summit aggregate with --split-correct)";
  }
  if (c.n_correct == null) return "the class is not one of the model's outputs: its images are neither correct nor wrong";
  const n = c.n_images, wrong = n - c.n_correct;
  if (view !== "correct" && !wrong) return `all ${n} images are classified correctly`;
  if (view !== "wrong" && !c.n_correct) return `none of its ${n} images is classified correctly`;
  return null;
}

/** "a", "a or b", "a, b or c". */
const either = (xs) => (xs.length > 1 ? `${xs.slice(0, -1).join(", ")} or ${xs.at(-1)}` : xs[0]);

/** The menu showing `state.images` for the selected class, each unavailable view disabled with
 * its reason (in its tooltip and the note under the class); a view the class has not falls back
 * to all images (the note says why). Comparing classes or runs, the menu says so. */
export function syncImages() {
  const c = classByName(state.selected);
  const why = Object.fromEntries(IMAGE_VIEWS.map((v) => [v, unavailable(v, c)]));
  let note = "";
  if (why[state.images]) {
    note = `no ${VIEW_TEXT[state.images]} view: ${why[state.images]}; showing all images`;
    state.images = "all";
  }
  const sel = $("#images-select");
  for (const o of sel.options) {
    if (!o.value) continue;
    o.disabled = !!why[o.value];
    o.title = why[o.value] || VIEW_TITLE[o.value];
  }
  sel.value = state.against || (state.compare && state.compareWith) ? "" : state.images;
  const off = d3.groups(IMAGE_VIEWS.filter((v) => why[v]), (v) => why[v])
    .map(([reason, views]) => `no ${either(views.map((v) => VIEW_TEXT[v]))} view: ${reason}`);
  const box = $("#images-note");
  box.textContent = note || off.join("; ");
  box.hidden = !box.textContent;
}

/** The graph URL of the images view, with the rule's query `q` (null: all images, the class
 * graph as before). */
export function imagesGraphUrl(q) {
  syncImages();
  if (state.images === "all") return null;
  q.set("class", state.selected);
  if (state.images === "correct-vs-wrong") return `/api/mistakes?${q}`;
  q.set("images", state.images);
  return `/api/graph?${q}`;
}

/** Image counts of a part ("correct" / "wrong") of class `c`, in words. */
export function partCount(part, c) {
  const n = part === "correct" ? c.n_correct : c.n_images - c.n_correct;
  return `${n} of its ${c.n_images} images (${part === "correct" ? "classified correctly" : "misclassified"})`;
}

/** The graph's heading for an images view (null: all images). */
export function imagesHeading() {
  const name = classLabel(state.selected);
  if (diffView()) return `${name}: correct vs wrong images`;
  return graphPart() === "all" ? null : `${name}: ${graphPart()} images`;
}

/** The graph title's second part for an images view (null: all images). */
export function imagesSub(g) {
  const c = classByName(state.selected);
  if (diffView()) {
    const s = g.summit, n = s.change.counts.nodes;
    return `${s.class.n_images_a} correct, ${s.class.n_images_b} wrong images · change ${s.change.score.toFixed(3)} · ` +
      `${n.lost} units only correct, ${n.gained} only wrong, ${n.kept} both · ${g.links.length} edges`;
  }
  const part = graphPart();
  return part === "all" || !c ? null : `${partCount(part, c)} · ${g.nodes.length} units, ${g.links.length} edges`;
}

/** The download's name suffix for the images view ("" for all images). */
export const imagesSuffix = () => (diffView() ? "-correct-vs-wrong" : graphPart() === "all" ? "" : `-${graphPart()}`);

/** A hash for another view: the current one with `changes` (null deletes a key), without the
 * unit and zoom of this one. */
function hashWith(changes) {
  const p = new URLSearchParams(location.hash.slice(1));
  for (const k of ["unit", "zoom", "images", "compare", "runs"]) p.delete(k);
  for (const [k, v] of Object.entries(changes)) if (v != null) p.set(k, v);
  return `#${p}`;
}

/** A link to another view: the address it opens (new tabs too); a click goes there in place. */
function viewLink(text, changes, attrs = {}) {
  return el("a", { ...attrs, href: hashWith(changes), text,
    onclick: (ev) => { ev.preventDefault(); location.hash = hashWith(changes); } });
}

let listSeq = 0;

/** The "Mistaken for" list of the selected class (/api/mistaken-for). */
export async function loadMistakenFor() {
  const box = $("#mistaken-for"), name = state.selected;
  const my = ++listSeq;
  box.replaceChildren();
  box.hidden = true;
  if (!name) return;
  let d;
  try {
    d = await api(`/api/mistaken-for?${new URLSearchParams({ class: name })}`);
  } catch (err) {
    showError(err);
    return;
  }
  if (my !== listSeq || !d.mistaken_for.length) return;
  const items = d.mistaken_for.map((m) => {
    const count = el("span", { class: "note", text: ` ${m.images} of ${d.n_images} image${d.n_images === 1 ? "" : "s"}` });
    if (m.name == null || !classByName(m.name)) {
      return el("li", { "data-output": m.output }, el("span", { class: "label", text: m.label }), count,
        el("span", { class: "note off-run", text: " · not a class of this run" }));
    }
    return el("li", { "data-output": m.output, "data-class": m.name },
      viewLink(classLabel(m.name), { class: m.name }, { class: "to-class", title: `the graph of ${m.name}` }), count,
      el("span", { class: "note" }, " · ", viewLink("compare", { class: name, compare: m.name },
        { class: "to-compare", title: `${classLabel(name)} and ${classLabel(m.name)} compared` })));
  });
  box.replaceChildren(el("span", { class: "head", text: "Mistaken for" }), el("ul", {}, ...items));
  box.hidden = false;
}

/** The menu chooses the view of the class in this run (the class or run comparison turns off:
 * one comparison at a time). */
export function wireMistakes(reload) {
  const sel = $("#images-select");
  sel.replaceChildren(el("option", { value: "", hidden: "", text: "(comparing)" }),
    ...IMAGE_VIEWS.map((v) => el("option", { value: v, text: VIEW_TEXT[v] })));
  sel.addEventListener("change", () => {
    state.images = sel.value;
    if (state.compare || state.against) {
      state.compare = false;
      state.against = false;
      syncCompare();
      renderClassList();
      markEmbedding();
    }
    reload();
  });
}
