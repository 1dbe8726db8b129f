// Building Blocks explorer: one image's semantic dictionary, attribution, neuron groups and its
// links to Summit's class graphs (docs/BLOCKS.md). ES module; D3 v7 is the global `d3`, loaded
// by blocks.html from ./vendor/d3.v7.min.js. State lives in the query string
// (?image=<dataset path>|upload=<id>&layer=&groups=&overlay=&class=), so the class-graph page's
// links (blocks.html?image=...) and the browser's back button both land on a complete view.

/* global d3 */
const PALETTE = d3.schemeTableau10;
const POS = [214, 39, 40];
const NEG = [31, 119, 180];
const DEFAULT_GROUPS = 6;
const VIEW = 224; // model input pixels; the canvas is drawn at this size and scaled by CSS

const $ = (s) => document.querySelector(s);
const state = {
  meta: null, classes: [], image: null, pick: null, layer: null, groups: DEFAULT_GROUPS, overlay: "attr", cls: 0,
  data: null, L: null, query: "", img: null, hoverCell: null, hoverGroup: null, sees: null, groupVis: null,
  mistakes: new Map(), // dataset path -> the run's misclassified image (/api/explain/images?source=mistakes)
};
let loadSeq = 0;
const builtFrom = new Map(); // cell query -> layer attribution JSON

// ------------------------------------------------------------------------------ helpers
async function api(url, opts) {
  const r = await fetch(url, opts);
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error(body && body.error ? body.error : `${r.status} ${r.statusText}`);
  return body;
}

function showError(e) {
  $("#error").textContent = e ? String(e.message || e) : "";
}

/** createElement with attributes ("onX": a handler) and children. An element other than a link or
 * button that takes a click also takes the focus (Tab) and acts on Enter or Space. */
function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) n[k] = v;
    else if (v !== null && v !== undefined) n.setAttribute(k, v);
  }
  if (attrs.onclick && !["a", "button"].includes(tag)) {
    if (!n.hasAttribute("tabindex")) n.tabIndex = 0;
    if (!n.hasAttribute("role")) n.setAttribute("role", "button");
    n.addEventListener("keydown", (e) => {
      if (e.target !== n || (e.key !== "Enter" && e.key !== " ")) return;
      e.preventDefault();
      n.click();
    });
  }
  for (const c of children) n.append(c);
  return n;
}

const fmt = (v) => (Math.abs(v) >= 100 ? d3.format(".0f")(v) : d3.format(".2~g")(v));
const signed = (v) => el("span", { class: `val ${v >= 0 ? "pos" : "neg"}` }, (v >= 0 ? "+" : "") + fmt(v));
const layerNames = () => state.meta.layers.map((l) => l.name);
const inGraph = (layer, ch) => state.data.links.some((l) => (l.nodes[layer] || []).includes(ch));

function hasFeaturevis(layer, ch) {
  return (state.meta.featurevis[layer] || []).includes(ch);
}

/** CSS for a unit's face: its feature visualization, else the first patch of its example strip. */
function thumbStyle(layer, ch) {
  if (hasFeaturevis(layer, ch)) return `background-image:url(/api/featurevis/${layer}/${ch}.png);background-size:100% 100%`;
  if (state.meta.has_examples) {
    const k = state.meta.examples_k || 8;
    return `background-image:url(/api/examples/${layer}/${ch}.jpg);background-size:${k * 100}% 100%;background-position:0 0`;
  }
  return "";
}

function channelChip(layer, ch, value) {
  const c = el("span", { class: `chan${inGraph(layer, ch) ? " in-graph" : ""}`, "data-channel": ch,
    title: `${layer}:${ch}${inGraph(layer, ch) ? " (node of a linked class graph)" : ""}`,
    onclick: () => showNode(layer, ch) },
  el("span", { class: "thumb", style: thumbStyle(layer, ch) }), `${ch}`);
  if (value !== undefined) c.append(signed(value));
  return c;
}

/** Draw (H, W) values as an overlay: colors[i] = [r, g, b], strengths in [0, 1]. */
function overlayCanvas(h, w, colorAt) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  const im = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const [rgb, a] = colorAt(i);
    im.data.set([rgb[0], rgb[1], rgb[2], Math.round(255 * Math.max(0, Math.min(1, a)))], 4 * i);
  }
  ctx.putImageData(im, 0, 0);
  return c;
}

function drawBase(ctx, dim) {
  ctx.clearRect(0, 0, VIEW, VIEW);
  if (!state.img) return;
  if (!dim) {
    ctx.drawImage(state.img, 0, 0, VIEW, VIEW);
    return;
  }
  ctx.filter = "grayscale(1)";
  ctx.drawImage(state.img, 0, 0, VIEW, VIEW);
  ctx.filter = "none";
  ctx.fillStyle = "rgba(255,255,255,0.65)";
  ctx.fillRect(0, 0, VIEW, VIEW);
}

function heatOverlay(values, h, w) {
  const peak = d3.max(values, Math.abs) || 1;
  return overlayCanvas(h, w, (i) => [values[i] >= 0 ? POS : NEG, Math.abs(values[i]) / peak]);
}

function groupsOverlay(groups, h, w, only) {
  const maps = groups.maps.map((m) => {
    const peak = d3.max(m) || 1;
    return m.map((v) => v / peak);
  });
  const rgb = PALETTE.map((c) => { const x = d3.rgb(c); return [x.r, x.g, x.b]; });
  return overlayCanvas(h, w, (i) => {
    if (only !== null) return [rgb[only % rgb.length], maps[only][i]];
    let best = 0;
    for (let g = 1; g < maps.length; g++) if (maps[g][i] > maps[best][i]) best = g;
    return [rgb[best % rgb.length], maps[best][i]];
  });
}

function paint(canvas, overlay) {
  const ctx = canvas.getContext("2d");
  drawBase(ctx, overlay !== null);
  if (overlay) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(overlay, 0, 0, canvas.width, canvas.height);
  }
}

// ------------------------------------------------------------------------------ URL state
/** A neuron-group count from text (the address or the field): an integer in 1..32, else the default. */
function parseGroups(text) {
  return Math.min(32, Math.max(1, parseInt(text, 10) || DEFAULT_GROUPS));
}

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.image = p.get("upload") ? { upload: p.get("upload") } : p.get("image") ? { image: p.get("image") } : null;
  const names = layerNames();
  state.layer = names.includes(p.get("layer")) ? p.get("layer") : names[Math.max(0, names.length - 3)];
  state.groups = parseGroups(p.get("groups"));
  state.overlay = ["attr", "groups", "none"].includes(p.get("overlay")) ? p.get("overlay") : "attr";
  state.cls = Math.max(0, parseInt(p.get("class"), 10) || 0);
  state.pick = state.classes.some((c) => c.name === p.get("pick")) ? p.get("pick") : null;
}

function writeUrl(push) {
  const p = new URLSearchParams(state.image || {});
  p.set("layer", state.layer);
  if (state.groups !== DEFAULT_GROUPS) p.set("groups", state.groups);
  if (state.overlay !== "attr") p.set("overlay", state.overlay);
  if (state.cls) p.set("class", state.cls);
  if (!state.image && state.pick) p.set("pick", state.pick);
  const url = `${location.pathname}?${p}`;
  if (url !== location.pathname + location.search) history[push ? "pushState" : "replaceState"](null, "", url);
}

/** The run class of a dataset image (its class folder), else null. */
function imageClass() {
  const folder = state.image && state.image.image ? state.image.image.split("/")[0] : "";
  return state.classes.some((c) => c.name === folder) ? folder : null;
}

/** Show a dataset image's class folder and file in the picker (for views opened by URL); with
 * no image, the class of ?pick= (the class graph the user came from). */
async function syncPicker() {
  const folder = imageClass() || (state.image ? null : state.pick);
  if (!folder) return;
  $("#source").value = "dataset";
  $("#source").onchange();
  if ($("#pick-class").value !== folder) {
    $("#pick-class").value = folder;
    await fillImages();
  }
  if (state.image) $("#pick-image").value = state.image.image;
}

function syncControls() {
  document.querySelectorAll("#layers button").forEach((b) => b.classList.toggle("active", b.dataset.layer === state.layer));
  document.querySelectorAll("#overlay-modes button").forEach((b) => b.classList.toggle("active", b.dataset.overlay === state.overlay));
  $("#groups").value = state.groups;
  const back = imageClass() || state.pick;
  $("#to-summit").href = back ? `/#class=${encodeURIComponent(back)}` : "/";
  $("#image-name").textContent = state.image ? (state.image.image || `upload ${state.image.upload.slice(0, 8)}…`) : "pick an image";
  syncPicker();
}

function openImage(image) {
  state.image = image;
  state.cls = 0;
  writeUrl(true);
  syncControls();
  load();
}

// ------------------------------------------------------------------------------ loading
async function load() {
  const seq = ++loadSeq;
  document.body.dataset.loaded = "";
  showError(null);
  if (!state.image) {
    $("#content").hidden = true;
    showLoading(null);
    return;
  }
  showLoading(`explaining ${state.image.image || "the upload"} at ${state.layer}` +
    (state.data ? "…" : " (the first explanation also loads the model: a few seconds)…"));
  const names = layerNames();
  const next = names[names.indexOf(state.layer) + 1];
  const q = new URLSearchParams(state.image);
  q.set("layers", [state.layer, next].filter(Boolean).join(","));
  q.set("groups", state.groups);
  try {
    const img = new Image();
    const loaded = new Promise((ok, fail) => { img.onload = ok; img.onerror = () => fail(new Error("could not load the image")); });
    const [data] = await Promise.all([api(`/api/explain?${q}`), (img.src = `/api/explain/input.png?${new URLSearchParams(state.image)}`, loaded)]);
    if (seq !== loadSeq) return;
    state.data = data;
    state.L = data.layers.find((l) => l.name === state.layer);
    state.query = q.toString();
    state.img = img;
    state.hoverCell = state.hoverGroup = null;
    state.sees = state.groupVis = null;
    if (state.cls >= data.classes.length) state.cls = 0;
    $("#content").hidden = false;
    showLoading(null);
    renderAll();
    document.body.dataset.loaded = `${state.layer}|${state.image.image || state.image.upload}`;
    fetchRenders(false, "positions");
    fetchRenders(false, "groups");
  } catch (e) {
    if (seq === loadSeq) {
      showLoading(null);
      showError(e);
    }
  }
}

/** The loading line (null: none); while it shows, the previous results are marked stale. */
function showLoading(text) {
  $("#loading").hidden = !text;
  $("#loading").textContent = text || "";
  $("#content").classList.toggle("stale", !!text);
  $("#content").setAttribute("aria-busy", text ? "true" : "false");
}

async function fetchRenders(run, kind) {
  const layer = state.layer;
  const button = $(kind === "positions" ? "#render-sees" : "#render-groups");
  if (run) { button.disabled = true; button.textContent = "rendering…"; }
  try {
    const r = await api(`/api/explain/render?${state.query}&layer=${layer}&kind=${kind}`, { method: run ? "POST" : "GET" });
    if (layer !== state.layer) return;
    const urls = r.urls.some((u) => u) ? r.urls : null;
    if (kind === "positions") { state.sees = urls; renderDictionary(); } else { state.groupVis = urls; renderGroups(); }
  } catch (e) {
    showError(e);
  } finally {
    if (run) { button.disabled = false; button.textContent = kind === "positions" ? "render what the network sees" : "render group icons"; }
  }
}

// ------------------------------------------------------------------------------ views
function renderAll() {
  $("#dict-info").textContent = `${state.L.name}: ${state.L.height}×${state.L.width} positions, ${state.L.grid.rows}×${state.L.grid.cols} cells`;
  renderView();
  renderClasses();
  renderDictionary();
  renderCell();
  renderAttribution();
  renderGroups();
  renderLinks();
  renderMistake();
  renderTopClass();
  syncControls();
}

function renderView() {
  const L = state.L;
  let overlay = null;
  if (state.hoverGroup !== null || state.overlay === "groups") overlay = groupsOverlay(L.groups, L.height, L.width, state.hoverGroup);
  else if (state.overlay === "attr") overlay = heatOverlay(L.spatial[state.cls], L.height, L.width);
  paint($("#view-canvas"), overlay);
  $("#view-canvas").dataset.group = state.hoverGroup ?? "";   // the group shown alone (hover or focus)
  const svg = d3.select("#view-overlay");
  svg.selectAll("*").remove();
  if (state.hoverCell !== null) {
    const g = L.grid;
    const r = Math.floor(state.hoverCell / g.cols);
    const c = state.hoverCell % g.cols;
    const sy = VIEW / L.height;
    const sx = VIEW / L.width;
    svg.append("rect").attr("data-testid", "cell-box").attr("x", g.x[c] * sx).attr("y", g.y[r] * sy)
      .attr("width", (g.x[c + 1] - g.x[c]) * sx).attr("height", (g.y[r + 1] - g.y[r]) * sy)
      .attr("fill", "none").attr("stroke", "#111").attr("stroke-width", 2);
  }
}

function renderClasses() {
  const box = $("#classes");
  box.replaceChildren();
  state.data.classes.forEach((c, k) => {
    const run = c.run_name ? ` · run class ${c.run_name}` : "";
    box.append(el("div", { class: `cls${k === state.cls ? " selected" : ""}`, "data-testid": "class-row",
      title: `output ${c.index}, rank ${c.rank}${run}`,
      onclick: () => { state.cls = k; writeUrl(false); renderAll(); } },
    el("span", {}, `${c.rank}. ${c.name}${c.role === "true" ? " (true class)" : ""}`),
    el("span", { class: "muted" }, d3.format(".1%")(c.prob)),
    el("div", { class: "bar", style: `width:${Math.max(1, 100 * c.prob)}%` })));
  });
}

function renderDictionary() {
  const L = state.L;
  const g = L.grid;
  const cell = Math.max(8, Math.floor(380 / Math.max(g.rows, g.cols)));
  const peak = d3.max(g.norm) || 1;
  const attr = g.attr[state.cls];
  const apeak = d3.max(attr, Math.abs) || 1;
  const grid = el("div", { class: "grid", style: `grid-template-columns:repeat(${g.cols},${cell}px);grid-auto-rows:${cell}px` });
  g.norm.forEach((n, i) => {
    const tint = attr[i] >= 0 ? POS : NEG;
    const side = Math.round(cell * Math.sqrt(n / peak));
    const face = state.sees && state.sees[i]
      ? `background-image:url(${state.sees[i]});background-size:100% 100%`
      : thumbStyle(L.name, g.top[i][0][0]);
    // one tab stop for the grid (the hovered cell, else the first); arrow keys move the focus
    const c = el("div", { class: `cell${i === state.hoverCell ? " hover" : ""}`, "data-cell": i, "data-testid": "dict-cell",
      style: `background:rgba(${tint.join(",")},${(0.35 * Math.abs(attr[i])) / apeak})`,
      tabindex: i === (state.hoverCell ?? 0) ? 0 : -1, role: "gridcell",
      "aria-label": `cell ${Math.floor(i / g.cols)}, ${i % g.cols}: strongest channel ${g.top[i][0][0]}`,
      onmouseenter: () => hoverCell(i), onfocus: () => hoverCell(i), onkeydown: (e) => moveCell(e, i) });
    if (side >= 2) c.append(el("span", { class: "face", style: `width:${side}px;height:${side}px;${face}` }));
    grid.append(c);
  });
  grid.setAttribute("role", "grid");
  grid.setAttribute("aria-label", "semantic dictionary: arrow keys move between cells");
  $("#dict").replaceChildren(grid);
}

/** Arrow keys in the dictionary: the focus (and the hover panel) moves to the neighbouring cell. */
function moveCell(e, i) {
  const { rows, cols } = state.L.grid;
  const r = Math.floor(i / cols), c = i % cols;
  const to = { ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1], ArrowUp: [r - 1, c], ArrowDown: [r + 1, c] }[e.key];
  if (!to || to[0] < 0 || to[0] >= rows || to[1] < 0 || to[1] >= cols) return;
  e.preventDefault();
  document.querySelector(`#dict .cell[data-cell="${to[0] * cols + to[1]}"]`).focus();
}

function hoverCell(i) {
  if (state.hoverCell === i) return;
  state.hoverCell = i;
  document.querySelectorAll("#dict .cell").forEach((c) => {
    c.classList.toggle("hover", +c.dataset.cell === i);
    c.tabIndex = +c.dataset.cell === i ? 0 : -1;
  });
  renderView();
  renderCell();
}

function renderCell() {
  const box = $("#cell");
  const L = state.L;
  const i = state.hoverCell;
  if (i === null) {
    box.className = "muted";
    box.textContent = "Hover a cell of the dictionary (or Tab to it and move with the arrow keys).";
    return;
  }
  box.className = "";
  const g = L.grid;
  const r = Math.floor(i / g.cols);
  const c = i % g.cols;
  box.replaceChildren(
    el("div", { "data-testid": "cell-title" }, `cell (${r}, ${c}) of ${L.name}: positions y ${g.y[r]}–${g.y[r + 1] - 1}, x ${g.x[c]}–${g.x[c + 1] - 1}; |a| = ${fmt(g.norm[i])}`));
  if (state.sees && state.sees[i]) box.append(el("div", { id: "sees" }, el("img", { src: state.sees[i], alt: "what the network sees" }), " what the network sees here"));
  box.append(el("h2", {}, "Strongest channels"));
  const top = el("div", { "data-testid": "cell-channels" });
  g.top[i].forEach(([ch, v]) => top.append(channelChip(L.name, ch, v)));
  box.append(top, el("h2", {}, "Attribution to the classes"));
  const rows = el("div", { class: "rows" });
  state.data.classes.forEach((cl, k) => {
    const row = el("div", {}, el("b", {}, cl.name), signed(g.attr[k][i]), el("span", { class: "muted" }, "="));
    g.attr_top[k][i].forEach(([ch, v]) => row.append(el("span", { class: "chip", onclick: () => showNode(L.name, ch) }, `${ch} `, signed(v))));
    row.append(el("span", { class: "muted" }, "+ rest "), signed(g.attr_rest[k][i]));
    rows.append(row);
  });
  box.append(rows);
  const names = layerNames();
  const prev = names[names.indexOf(L.name) - 1];
  if (prev) {
    const holder = el("div", { "data-testid": "built-from" }, el("h2", {}, `Built from ${prev}`), el("span", { class: "muted" }, "…"));
    box.append(holder);
    const cellBox = { y0: g.y[r], y1: g.y[r + 1], x0: g.x[c], x1: g.x[c + 1] };
    const wanted = () => state.hoverCell === i && state.L === L;
    setTimeout(() => { if (wanted()) loadBuiltFrom(prev, L.name, cellBox, holder, wanted); }, 120); // pointer settles
  }
}

/** Which positions and channels of layer `prev` build a target of `layer` (a box of positions
 * or a channel), drawn into `holder` while `wanted()` still holds. */
async function loadBuiltFrom(prev, layer, target, holder, wanted) {
  const q = new URLSearchParams({ ...state.image, src: prev, dst: layer, ...target }).toString();
  try {
    if (!builtFrom.has(q)) builtFrom.set(q, await api(`/api/explain/layer?${q}`));
    if (!wanted()) return;
    const a = builtFrom.get(q);
    const canvas = el("canvas", { width: VIEW, height: VIEW, style: "width:112px;height:112px;float:left;margin-right:8px" });
    paint(canvas, heatOverlay(a.spatial, a.height, a.width));
    const chans = el("div", {});
    a.positive.slice(0, 6).forEach(([ch, v]) => chans.append(channelChip(prev, ch, v)));
    holder.replaceChildren(el("h2", {}, `Built from ${prev}`), canvas, chans, el("div", { style: "clear:both" }));
  } catch (e) {
    if (wanted()) holder.replaceChildren(el("span", { class: "muted" }, String(e.message)));
  }
}

function renderAttribution() {
  const L = state.L;
  const box = $("#attribution");
  box.replaceChildren();
  state.data.classes.forEach((cl, k) => {
    const canvas = el("canvas", { width: VIEW, height: VIEW });
    paint(canvas, heatOverlay(L.spatial[k], L.height, L.width));
    const chans = el("div", {});
    L.channel_attr[k].positive.slice(0, 4).forEach(([ch, v]) => chans.append(channelChip(L.name, ch, v)));
    L.channel_attr[k].negative.slice(0, 2).forEach(([ch, v]) => chans.append(channelChip(L.name, ch, -v)));
    box.append(el("div", { class: `attr-class${k === state.cls ? " selected" : ""}`, "data-testid": "attr-class", onclick: () => { state.cls = k; writeUrl(false); renderAll(); } },
      el("b", {}, cl.name), el("span", { class: "muted" }, ` ${d3.format(".1%")(cl.prob)}`), canvas, chans));
  });
}

function renderGroups() {
  const L = state.L;
  const G = L.groups;
  $("#groups-info").textContent = `${G.n} groups, reconstruction error ${d3.format(".0%")(G.error)}`;
  const box = $("#groups-list");
  box.replaceChildren();
  for (let g = 0; g < G.n; g++) {
    const icon = state.groupVis && state.groupVis[g]
      ? el("img", { src: state.groupVis[g], alt: `group ${g}` })
      : el("span", { class: "thumb", style: thumbStyle(L.name, G.directions[g][0][0]) });
    const attrs = el("div", {}, el("span", { class: "muted" }, "channels "),
      G.directions[g].slice(0, 4).map(([ch]) => ch).join(", "), el("br"));
    state.data.classes.forEach((cl, k) => attrs.append(el("span", { title: cl.name }, `${cl.name.slice(0, 14)} `), signed(G.attr[g][k]), " "));
    const show = (on) => () => { state.hoverGroup = on ? g : null; renderView(); };
    box.append(el("div", { class: "group", "data-testid": "group", "data-group": g, tabindex: 0,
      "aria-label": `group ${g}: its region shown on the image`,
      onmouseenter: show(true), onmouseleave: show(false), onfocus: show(true), onblur: show(false) },
    el("span", { class: "swatch", style: `background:${PALETTE[g % PALETTE.length]}` }), icon, attrs));
  }
  const next = $("#groups-next");
  next.replaceChildren();
  if (G.next) {
    const peak = d3.max(G.next.attr.flat(), Math.abs) || 1;
    const head = el("tr", {}, el("th", {}, ""));
    G.next.attr[0].forEach((_, j) => head.append(el("th", {}, `${j}`)));
    const table = el("table", { class: "matrix", "data-testid": "groups-matrix" }, head);
    G.next.attr.forEach((row, g) => {
      const tr = el("tr", {}, el("th", { style: `color:${PALETTE[g % PALETTE.length]}` }, `${g}`));
      row.forEach((v) => tr.append(el("td", { style: `background:rgba(${(v >= 0 ? POS : NEG).join(",")},${(0.6 * Math.abs(v)) / peak})` }, fmt(v))));
      table.append(tr);
    });
    next.append(el("h2", {}, `Groups → ${G.next.layer} groups`), table);
  }
}

/** Why a run class's graph is shown: the run class the model ranks highest, the image's class
 * folder, or both, with the model's rank of it. */
function linkRoles(link) {
  const why = link.roles.map((r) => (r === "predicted" ? "best run class" : "true class: the image's folder"));
  return `${why.join(" and ")}; model rank ${link.model_rank ?? "–"}`;
}

/** The model's own top class (over all its outputs) beside the image's name. */
function renderTopClass() {
  const top = state.data.classes.find((c) => c.rank === 1);
  $("#top-class").textContent = top ? `model's top class: ${top.name} ${d3.format(".1%")(top.prob)}` : "";
}

function renderLinks() {
  const L = state.L;
  const box = $("#links");
  box.replaceChildren();
  if (!state.data.links.length) {
    box.append(el("div", { class: "muted" }, "The prediction is not a class of this run and the image has no class folder: no class graph to link."));
  }
  const active = new Set(L.active.map((a) => a.channel));
  const top = state.data.classes.find((c) => c.rank === 1);
  box.append(el("div", { "data-testid": "top-class-note", class: "muted" },
    `The model's top class is ${top.name}${top.run_name ? ` (run class ${top.run_name})` : ", not a class of this run"}; ` +
    "a run class's graph is shown below:"));
  state.data.links.forEach((link) => {
    const nodes = link.nodes[L.name] || [];
    const hit = L.active.filter((a) => nodes.includes(a.channel)).length;
    const div = el("div", { "data-testid": "link" },
      el("b", {}, `${link.name} `),
      el("span", { class: "muted" }, `(${linkRoles(link)}) `),
      el("a", { href: `/#class=${encodeURIComponent(link.name)}`, "data-testid": "graph-link" }, "open class graph"),
      el("div", { class: "muted" }, `${hit} of the image's ${L.active.length} most active ${L.name} channels are nodes of this graph (${link.graph_nodes} nodes); green: active here`));
    nodes.forEach((ch) => div.append(el("span", { class: `chip${active.has(ch) ? " active-here" : ""}`, "data-testid": "node-chip",
      "data-channel": ch, onclick: () => showNode(L.name, ch) }, `${L.name}:${ch}`)));
    box.append(div);
  });
}

/** A URL of the main UI's class-graph view: `/#class=X` plus hash parameters (its contract). */
function graphHref(cls, extra = "") {
  return `/#class=${encodeURIComponent(cls)}${extra}`;
}

/** A misclassified image (our feature, docs/BLOCKS.md): its true class X and the model's top-1 Y,
 * links to their graphs, and a table of the layer's strongest channels marked in each graph, with
 * their attribution to X and to Y. Hidden for correctly classified images and images without a class. */
function renderMistake() {
  const m = state.data.mistake;
  const box = $("#mistake");
  box.hidden = !m;
  if (!m) {
    ["#mistake-head", "#mistake-links", "#mistake-table"].forEach((s) => $(s).replaceChildren());
    return;
  }
  const X = m.true.name;
  const Y = m.predicted.run_name;
  const pct = d3.format(".1%");
  $("#mistake-head").replaceChildren(
    "true class ", el("b", {}, X), el("span", { class: "muted" }, ` (model rank ${m.true.rank}, ${pct(m.true.prob)})`),
    ", the model says ", el("b", { "data-testid": "mistake-predicted" }, m.predicted.name), ` (${pct(m.predicted.prob)})`,
    el("span", { class: "muted" }, Y ? ` = run class ${Y}` : ": not a class of this run"),
    m.best ? el("span", { class: "muted" }, `; the run class it ranks highest is ${m.best.name} (rank ${m.best.model_rank})`) : "");
  const links = [el("a", { href: graphHref(X), "data-testid": "mistake-true-graph" }, `${X}'s class graph`)];
  if (Y) links.push(el("a", { href: graphHref(Y), "data-testid": "mistake-predicted-graph" }, `${Y}'s class graph`));
  if (m.graphs.wrong) {
    links.push(el("a", { href: graphHref(X, "&images=wrong"), "data-testid": "mistake-wrong-graph" }, `${X}'s misclassified images' graph`),
      el("a", { href: graphHref(X, "&images=correct-vs-wrong"), "data-testid": "mistake-correct-vs-wrong" }, `${X}: correct vs wrong images`));
  }
  const other = Y || (m.best && m.best.name);
  if (other) links.push(el("a", { href: graphHref(X, `&compare=${encodeURIComponent(other)}`), "data-testid": "mistake-compare" }, `compare ${X} with ${other}`));
  const notes = Object.entries(m.missing).filter(([role]) => role !== "best")
    .map(([role, why]) => el("span", { class: "muted", "data-testid": `mistake-missing-${role}` }, `no ${role === "wrong" ? "wrong-images" : role} graph: ${why}`));
  $("#mistake-links").replaceChildren(...links, ...notes);
  renderMistakeTable(m, state.L.name);
}

function renderMistakeTable(m, layer) {
  const rows = m.layers[layer] || [];
  const k = rows.filter((r) => r.active).length;
  const Y = m.predicted.name;
  const cols = [["true", `${m.true.name} graph`], ["predicted", `${Y} graph`]];
  if (m.best) cols.push(["best", `${m.best.name} graph`]);
  cols.push(["wrong", `${m.true.name} wrong-images graph`]);
  const mark = (v) => (v === null ? el("span", { class: "mark-none", title: "no such graph" }, "–")
    : el("span", { class: v ? "mark-yes" : "mark-no", title: v ? "a node of this graph" : "not a node" }, v ? "●" : "·"));
  const head = el("tr", {}, el("th", {}, "channel"), el("th", {}, "max act."), el("th", { title: `the image's top ${k}: the rule that counts A[class, channel]` }, `top ${k}`),
    ...cols.map(([, label]) => el("th", {}, label)), el("th", {}, `attr → ${m.true.name}`), el("th", {}, `attr → ${Y}`));
  const table = el("table", { class: "mistake", "data-testid": "mistake-rows" }, head);
  rows.forEach((r) => {
    const toward = r.attr.predicted > r.attr.true;
    const tr = el("tr", { "data-testid": "mistake-row", "data-channel": r.channel, class: toward ? "toward-wrong" : "",
      title: toward ? `pushes ${Y} more than ${m.true.name}` : "" },
    el("td", {}, channelChip(layer, r.channel)), el("td", { class: "num" }, fmt(r.value)), el("td", {}, r.active ? "✓" : ""));
    cols.forEach(([role]) => tr.append(el("td", { "data-role": role, "data-in": r.in[role] === null ? "" : r.in[role] ? "1" : "0" }, mark(r.in[role]))));
    tr.append(el("td", { class: "num", "data-attr": "true" }, signed(r.attr.true)), el("td", { class: "num", "data-attr": "predicted" }, signed(r.attr.predicted)));
    table.append(tr);
  });
  $("#mistake-table").replaceChildren(
    el("div", { class: "muted" }, `The image's ${rows.length} strongest ${layer} channels (by spatial max; the first ${k} are its active ones). ` +
      `● a node of that graph, · not, – no such graph. Attribution: activation × gradient of the class logit, summed over positions; ` +
      `shaded rows push ${Y} more than ${m.true.name}. Click a channel for its dataset images.`), table);
}

/** A unit (graph node or any channel): the dataset images where it fired most, each one click away. */
async function showNode(layer, ch) {
  const box = $("#node-images");
  box.replaceChildren(el("span", { class: "muted" }, `${layer}:${ch}…`));
  try {
    const d = await api(`/api/channel/${layer}/${ch}`);
    const list = el("div", { "data-testid": "node-list" });
    const names = layerNames();
    const prev = names[names.indexOf(layer) - 1];
    if (prev && state.data) { // what builds this channel in the current image
      const holder = el("div", { "data-testid": "node-built-from" }, el("span", { class: "muted" }, "…"));
      list.append(el("h2", {}, `${layer}:${ch} in this image`), holder);
      const image = state.image;
      loadBuiltFrom(prev, layer, { channel: ch }, holder, () => state.image === image);
    }
    list.append(el("h2", {}, `${layer}:${ch}: images where it fired most`),
      el("span", { class: "thumb", style: thumbStyle(layer, ch) }));
    if (!d.examples.length) list.append(el("div", { class: "muted" }, "no dataset examples stored in this run"));
    const k = d.examples.length;
    d.examples.forEach((ex, i) => list.append(el("div", { class: "example-row" },
      el("a", { href: `?image=${encodeURIComponent(ex.image)}&layer=${layer}`, "data-testid": "explore-image",
        onclick: (e) => { e.preventDefault(); state.layer = layer; openImage({ image: ex.image }); } },
      // the image's patch where the unit fired (the i-th of the example strip)
      el("span", { class: "thumb patch", "data-testid": "example-patch", style: `background-image:url(${d.examples_url});` +
        `background-size:${k * 100}% 100%;background-position:${k > 1 ? (100 * i) / (k - 1) : 0}% 0` }), ex.image),
      el("span", { class: "muted" }, ` ${fmt(ex.value)}`))));
    box.replaceChildren(list);
  } catch (e) {
    box.replaceChildren(el("span", { class: "muted" }, String(e.message)));
  }
}

// ------------------------------------------------------------------------------ picker
/** The image list of the chosen class folder; misclassified images (from the run's predictions) are
 * marked with what the model took them for. "mistakes only": just those, of every class when none is chosen. */
async function fillImages() {
  const cls = $("#pick-class").value;
  const only = $("#mistakes-only").checked;
  const sel = $("#pick-image");
  sel.replaceChildren(el("option", { value: "" }, only ? "misclassified image…" : "image…"));
  const option = (p, name) => {
    const w = state.mistakes.get(p);
    return el("option", { value: p, class: w ? "wrong" : null, "data-wrong": w ? "1" : null },
      w ? `✗ ${name} (taken for ${w.label})` : name);
  };
  if (only) {
    for (const [p, w] of state.mistakes) if (!cls || w.name === cls) sel.append(option(p, cls ? p.split("/").pop() : p));
    return;
  }
  if (!cls) return;
  try {
    const { images } = await api(`/api/explain/images?class=${encodeURIComponent(cls)}`);
    images.forEach((p) => sel.append(option(p, p.split("/").pop())));
  } catch (e) {
    showError(e);
  }
}

/** The run's misclassified images, for the picker (none for runs without predictions). */
async function loadMistakes() {
  const { images } = await api("/api/explain/images?source=mistakes");
  state.mistakes = new Map(images.map((x) => [x.image, x]));
  $("#mistakes-count").textContent = `(${images.length})`;
  const wrong = d3.rollup(images, (v) => v.length, (x) => x.name);
  document.querySelectorAll("#pick-class option").forEach((o) => {
    if (wrong.has(o.value)) o.textContent += ` · ${wrong.get(o.value)} wrong`;
  });
}

async function fillExamples() {
  const sel = $("#pick-example");
  if (sel.options.length) return;
  sel.append(el("option", { value: "" }, "example image…"));
  const { images } = await api("/api/explain/images?source=examples");
  images.slice(0, 500).forEach((x) => sel.append(el("option", { value: x.image }, `${x.image} (${x.units} units)`)));
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  try {
    const r = await api("/api/explain/upload", { method: "POST", body: form });
    openImage({ upload: r.upload });
  } catch (e) {
    showError(e);
  }
}

function wire() {
  $("#source").onchange = async () => {
    const s = $("#source").value;
    $("#pick-dataset").hidden = s !== "dataset";
    $("#pick-examples").hidden = s !== "examples";
    $("#pick-upload").hidden = s !== "upload";
    if (s === "examples") await fillExamples().catch(showError);
  };
  $("#pick-class").onchange = fillImages;
  $("#mistakes-only").onchange = fillImages;
  $("#pick-image").onchange = () => { if ($("#pick-image").value) openImage({ image: $("#pick-image").value }); };
  $("#pick-example").onchange = () => { if ($("#pick-example").value) openImage({ image: $("#pick-example").value }); };
  $("#upload").onchange = () => { if ($("#upload").files.length) upload($("#upload").files[0]); };
  $("#groups").onchange = () => {
    const n = parseGroups($("#groups").value);
    $("#groups").value = n;
    if (n === state.groups) return; // a second change event (the field's blur) must not reload and grey the page
    state.groups = n;
    writeUrl(false);
    load();
  };
  document.querySelectorAll("#overlay-modes button").forEach((b) => {
    b.onclick = () => { state.overlay = b.dataset.overlay; writeUrl(false); syncControls(); renderView(); };
  });
  $("#render-sees").onclick = () => fetchRenders(true, "positions");
  $("#render-groups").onclick = () => fetchRenders(true, "groups");
  window.addEventListener("popstate", () => { readUrl(); syncControls(); load(); });
}

async function init() {
  try {
    const [meta, classes] = await Promise.all([api("/api/meta"), api("/api/classes")]);
    state.meta = meta;
    state.classes = classes.classes;
    $("#run-info").textContent = `${meta.model} (${meta.weights}) · ${meta.dataset.n_images} images · ${meta.dataset.n_classes} classes`;
    const nav = $("#layers");
    meta.layers.forEach((l) => nav.append(el("button", { "data-layer": l.name, "data-testid": "layer-tab",
      onclick: () => { state.layer = l.name; writeUrl(false); syncControls(); load(); } }, l.name)));
    const pc = $("#pick-class");
    pc.append(el("option", { value: "" }, "class…"));
    state.classes.forEach((c) => pc.append(el("option", { value: c.name }, c.label ?? c.name)));
    await loadMistakes().catch(showError);
    wire();
    readUrl();
    syncControls();
    load();
  } catch (e) {
    showError(e);
  }
  document.body.dataset.ready = "1";
}

init();
