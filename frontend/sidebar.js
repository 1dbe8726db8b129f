// Class sidebar (Summit's class list): the selected class pinned on top, the others ordered by
// cosine similarity to it (as Summit; the vectors compared, A rows of the chosen layer, are our
// choice), or by accuracy (either way), images, name;
// each row shows the top-1 probability histogram of its images and a similarity bar. With a run
// comparison (--against), also by change from run A to run B (most changed first) with each
// row's change score. The search
// ignores case and treats spaces and underscores alike, with an autocomplete list.

import { api, showError } from "./api.js";
import { $, el, pct } from "./dom.js";
import { actions, classByName, classLabel, ruleParams, state, writeHash } from "./state.js";

/** "022_Bald  eagle" -> "022 bald eagle": the form search compares. */
const normalize = (s) => String(s).toLowerCase().replace(/[\s_]+/g, " ").trim();

/** Classes matching a query (its label, name or wnid), best first: starting with it, then a word
 * starting with it, then containing it anywhere. */
function matches(query) {
  const q = normalize(query);
  if (!q) return state.classes.slice();
  const rank1 = (n) => {
    if (n.startsWith(q)) return 0;
    if (n.includes(` ${q}`)) return 1;
    return n.includes(q) ? 2 : -1;
  };
  const rank = (c) => {
    const keys = c.keys ?? (c.keys = [...new Set([c.label ?? c.name, c.name, c.wnid ?? ""].map(normalize))]);
    const r = keys.map(rank1).filter((x) => x >= 0);
    return r.length ? Math.min(...r) : -1;
  };
  return state.classes.map((c) => [rank(c), c]).filter(([r]) => r >= 0)
    .sort((a, b) => a[0] - b[0]).map(([, c]) => c);
}

/** Similarity of class c to the selected class in the chosen layer (null until it is loaded). */
function simOf(c) {
  const s = state.similarity;
  if (!s || s.class !== state.selected || (s.layer ?? "") !== state.simLayer) return null;
  return s.similarity[c.class];
}

export async function loadSimilarity() {
  if (!state.selected) return;
  const q = new URLSearchParams({ class: state.selected });
  if (state.simLayer) q.set("layer", state.simLayer);
  try {
    const s = await api(`/api/similar?${q}`);
    if (s.class === state.selected && (s.layer ?? "") === state.simLayer) {
      state.similarity = s;
      renderClassList();
    }
  } catch (err) {
    showError(err);
  }
}

const changesFresh = () => state.changes?.key === ruleParams().toString();
const changesDone = () => changesFresh() && !state.changes.pending;

/** A class's change score from run A to run B under the current rule (null until loaded, or for
 * a class of run A only). */
const changeOf = (c) => (changesFresh() ? state.changes.score.get(c.name) ?? null : null);

/** A class's place in the server's change order (score, then edge score, then name). */
const changeRank = (c) => (changesFresh() ? state.changes.rank.get(c.name) ?? Infinity : Infinity);

let changesAsked = null;   // the rule whose change scores are on their way

/** The change score of every class (server: /api/against/classes, computed there once per class
 * and rule, in the background: the classes not yet compared are `pending` and asked for again
 * a second later; the list is drawn again each time). */
async function loadChanges() {
  const key = ruleParams().toString();
  if (changesAsked === key) return;
  changesAsked = key;
  let pending = 0;
  try {
    const r = await api(`/api/against/classes?${key}`);
    pending = r.pending;
    state.changes = { key, pending, score: new Map(r.classes.map((c) => [c.name, c.score])),
      rank: new Map(r.classes.map((c, i) => [c.name, i])) };
    if (changesAsked === key) renderClassList();
  } catch (err) {
    showError(err);
  } finally {
    if (changesAsked === key) changesAsked = null;
  }
  if (pending) setTimeout(() => { if (ruleParams().toString() === key) loadChanges(); }, 1000);
}

/** Top-1 probability histogram (10 bins on [0, 1]) as a small bar chart; where the run has
 * per-image predictions, each bar's correctly classified images are drawn darker at its foot. */
function histSvg(hist, correct) {
  const w = 64, h = 16, bw = w / hist.length, max = Math.max(1, ...hist);
  const svg = d3.create("svg").attr("class", "hist").classed("split", !!correct).attr("width", w)
    .attr("height", h).attr("viewBox", `0 0 ${w} ${h}`);
  const split = correct ? ` (correct: ${correct.join(", ")})` : "";
  svg.append("title").text(`top-1 probability of the class's images (10 bins, 0 to 1): ${hist.join(", ")}${split}`);
  svg.append("line").attr("x1", 0).attr("x2", w).attr("y1", h - 0.5).attr("y2", h - 0.5).attr("stroke", "#c5ccd4");
  const bar = (cls, v, i) => {
    const bh = ((h - 1) * v) / max;
    svg.append("rect").attr("class", cls).attr("x", i * bw + 0.5).attr("y", h - 1 - bh)
      .attr("width", bw - 1).attr("height", bh);
  };
  hist.forEach((v, i) => bar("all", v, i));
  if (correct) correct.forEach((v, i) => bar("correct", v, i));
  return svg.node();
}

/** "goose (099_goose, n01855672)": the label with the folder name and wnid where they differ. */
function labelAndName(c) {
  const label = c.label ?? c.name;
  const more = [...new Set([c.name, c.wnid].filter((x) => x && x !== label))];
  return more.length ? `${label} (${more.join(", ")})` : label;
}

function classRow(c, pinned) {
  const sim = simOf(c);
  const simBar = el("div", { class: "sim", title: sim == null ? "similarity: loading" :
    `cosine similarity of A rows to ${classLabel(state.selected)} (${state.simLayer || "all layers"}): ${sim.toFixed(3)}` },
  el("span"));
  simBar.firstChild.style.width = `${Math.max(0, 100 * (sim ?? 0))}%`;
  const change = state.meta.against ? changeOf(c) : null;
  const li = el("li", {   // one tab stop for the whole list (the pinned row); arrow keys move along it
    "data-class": c.name, tabindex: pinned ? 0 : -1, role: "option", "aria-selected": pinned ? "true" : "false",
    title: `${labelAndName(c)}: ${c.n_images} images, top-1 accuracy ${pct(c.accuracy)}`,
    onclick: () => actions.selectClass(c.name),
    onmouseenter: () => hoverClass(c.name),
    onmouseleave: () => hoverClass(null),
    onfocus: () => hoverClass(c.name),
    onblur: () => hoverClass(null),
  }, el("span", { class: "name", text: c.label ?? c.name }),
  el("span", { class: "stats" }, `${c.n_images} · ${pct(c.accuracy)}`,
    ...(change == null ? [] : [el("span", { class: "change", "data-change": change,
      title: "change from run A to run B: 1 - weighted Jaccard index of the two graphs' node shares (0: same graph, 1: no unit shared)",
      text: ` · Δ ${change.toFixed(2)}` })])),
  c.hist ? histSvg(c.hist, c.hist_correct) : el("span", { class: "hist none" }), simBar);
  li.classList.toggle("selected", pinned);
  li.classList.toggle("compared", state.compare && c.name === state.compareWith);
  return li;
}

const CHUNK = 40;    // rows drawn at once (two screens); more as the list scrolls (1000 classes stay fast)
let pending = [];

function appendRows() {
  const list = $("#class-list");
  list.append(...pending.slice(0, CHUNK).map((c) => classRow(c, false)));
  pending = pending.slice(CHUNK);
}

export function renderClassList() {
  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const cmp = {
    similarity: (a, b) => (simOf(b) ?? -2) - (simOf(a) ?? -2) || byName(a, b),
    accuracy: (a, b) => (b.accuracy ?? -1) - (a.accuracy ?? -1) || byName(a, b),
    "accuracy-asc": (a, b) => (a.accuracy ?? 2) - (b.accuracy ?? 2) || byName(a, b),   // classes without labels last
    count: (a, b) => b.n_images - a.n_images || byName(a, b),
    name: byName,
    change: (a, b) => changeRank(a) - changeRank(b) || byName(a, b),
  }[state.classSort];
  if (state.meta.against && !changesDone()) loadChanges();
  const query = $("#class-search").value;
  const rows = matches(query).filter((c) => c.name !== state.selected);
  if (state.classSort !== "similarity" || !normalize(query)) rows.sort(cmp);
  const sel = classByName(state.selected);
  // the row with the focus keeps it across the redraw (a picked class's row is now the pinned one)
  const focused = document.activeElement?.closest?.("#class-pinned li[data-class], #class-list li[data-class]")?.dataset.class;
  $("#class-pinned").replaceChildren(...(sel ? [classRow(sel, true)] : []));
  const list = $("#class-list");
  list.replaceChildren();
  list.dataset.total = rows.length;
  pending = rows;
  appendRows();
  if (focused) {
    while (pending.length && !list.querySelector(`li[data-class="${CSS.escape(focused)}"]`)) appendRows();
    document.querySelector(`#class-pinned li[data-class="${CSS.escape(focused)}"], #class-list li[data-class="${CSS.escape(focused)}"]`)?.focus();
  }
  if (!rows.length) list.append(el("li", { class: "empty", text: "no other class matches" }));
  markVisible();
}

/** The class under the pointer (or the focus) in the list, marked and labelled in the embedding. */
function hoverClass(name) {
  state.hoverClass = name;
  onMark();
}

/** The classes whose rows are in view in the scrolled list (Summit marks them in the embedding). */
function markVisible() {
  const list = $("#class-list"), r = list.getBoundingClientRect();
  state.listVisible = new Set([...list.querySelectorAll("li[data-class]")]
    .filter((li) => { const b = li.getBoundingClientRect(); return b.bottom > r.top + 2 && b.top < r.bottom - 2; })
    .map((li) => li.dataset.class));
  onMark();
}

let onMark = () => {};

// ---------------------------------------------------------------- search with autocomplete
let active = -1;

function renderSuggest() {
  const input = $("#class-search"), box = $("#class-suggest");
  const hits = normalize(input.value) ? matches(input.value).slice(0, 8) : [];
  active = Math.min(active, hits.length - 1);
  box.replaceChildren(...hits.map((c, i) => el("li", {
    role: "option", id: `suggest-${i}`, "data-class": c.name, class: i === active ? "active" : null,
    "aria-selected": i === active ? "true" : "false",
    onmousedown: (ev) => { ev.preventDefault(); pick(c.name); },
  }, c.label ?? c.name)));
  box.hidden = !hits.length;
  input.setAttribute("aria-expanded", String(!box.hidden));
  if (active >= 0) input.setAttribute("aria-activedescendant", `suggest-${active}`);
  else input.removeAttribute("aria-activedescendant");
}

function pick(name) {
  $("#class-search").value = "";
  active = -1;
  renderSuggest();
  actions.selectClass(name);
}

function onSearchKey(ev) {
  const items = [...document.querySelectorAll("#class-suggest li")];
  if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    if (!items.length) return;
    ev.preventDefault();
    active = (active + (ev.key === "ArrowDown" ? 1 : items.length - 1 + (active < 0 ? 1 : 0))) % items.length;
    renderSuggest();
  } else if (ev.key === "Enter") {
    const first = items[Math.max(0, active)] || $("#class-list li[data-class]");
    if (first) pick(first.dataset.class);
  } else if (ev.key === "Escape") {
    active = -1;
    $("#class-suggest").hidden = true;
  }
}

/** Arrow keys move the focus along the class rows; Enter or Space picks the focused one. */
function onListKey(ev) {
  const li = ev.target.closest("li[data-class]");
  if (!li) return;
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    actions.selectClass(li.dataset.class);
  } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    const rows = () => [...document.querySelectorAll("#class-pinned li[data-class], #class-list li[data-class]")];
    const i = rows().indexOf(li) + (ev.key === "ArrowDown" ? 1 : -1);
    if (i >= rows().length && pending.length) appendRows();
    rows()[i]?.focus();
  }
}

/** `onLayer`: the layer changed (the embedding redraws); `mark`: the hovered or visible classes changed. */
export function wireSidebar(onLayer, mark) {
  onMark = mark;
  const search = $("#class-search");
  search.addEventListener("input", () => { active = -1; renderSuggest(); renderClassList(); });
  search.addEventListener("keydown", onSearchKey);
  search.addEventListener("blur", () => { $("#class-suggest").hidden = true; });
  if (state.meta.against) $('#class-sort option[value="change"]').hidden = false;
  $("#class-sort").value = state.classSort;
  $("#class-sort").addEventListener("change", (ev) => {
    state.classSort = ev.target.value;
    renderClassList();
    writeHash();
  });
  const layer = $("#sim-layer");
  layer.replaceChildren(el("option", { value: "", text: "all layers" }),
    ...state.meta.layers.map((l) => el("option", { value: l.name, text: l.name })));
  layer.value = state.simLayer;
  layer.addEventListener("change", () => {
    state.simLayer = layer.value;
    writeHash();
    loadSimilarity();
    onLayer();
  });
  $("#class-pinned").addEventListener("keydown", onListKey);
  const list = $("#class-list");
  list.addEventListener("keydown", onListKey);
  list.addEventListener("scroll", () => {
    if (pending.length && list.scrollTop + list.clientHeight > list.scrollHeight - 200) appendRows();
    markVisible();
  });
  new ResizeObserver(markVisible).observe(list);
}
