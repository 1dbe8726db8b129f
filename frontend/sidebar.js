// Class sidebar: searchable, sortable list of classes with image counts and accuracy bars.

import { $, el, pct } from "./dom.js";
import { actions, state } from "./state.js";

export function renderClassList() {
  const q = $("#class-search").value.trim().toLowerCase();
  const sort = $("#class-sort").value;
  const cmp = {
    count: (a, b) => b.n_images - a.n_images || a.name.localeCompare(b.name),
    accuracy: (a, b) => (b.accuracy ?? -1) - (a.accuracy ?? -1) || a.name.localeCompare(b.name),
    name: (a, b) => a.name.localeCompare(b.name),
  }[sort];
  const rows = state.classes.filter((c) => c.name.toLowerCase().includes(q)).sort(cmp);
  const list = $("#class-list");
  list.replaceChildren(...rows.map((c) => {
    const bar = el("div", { class: "bar" }, el("span"));
    bar.firstChild.style.width = pct(c.accuracy ?? 0);
    const li = el("li", {
      "data-class": c.name, title: `${c.name}: ${c.n_images} images, top-1 accuracy ${pct(c.accuracy)}`,
      onclick: () => actions.selectClass(c.name),
    }, el("span", { class: "name", text: c.name }),
    el("span", { class: "stats", text: `${c.n_images} · ${pct(c.accuracy)}` }), bar);
    li.classList.toggle("selected", c.name === state.selected);
    li.classList.toggle("compared", state.compare && c.name === state.compareWith);
    return li;
  }));
  if (!rows.length) list.append(el("li", { class: "empty", text: "no class matches" }));
}

export function wireSidebar() {
  $("#class-search").addEventListener("input", renderClassList);
  $("#class-sort").addEventListener("change", renderClassList);
  $("#class-search").addEventListener("keydown", (ev) => {
    const first = $("#class-list li[data-class]");
    if (ev.key === "Enter" && first) actions.selectClass(first.dataset.class);
  });
}
