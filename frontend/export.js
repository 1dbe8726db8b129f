// Figures for papers: the current graph with a title, a legend (node size, edge width, compare
// colours) and a caption (model, weights, rule and thresholds, class, images, accuracy) as one
// SVG, drawn by graph.js's own layout and drawing code. SVG downloads stand alone (one JPEG
// thumbnail per node, the font embedded); PNG is that SVG on a canvas at a chosen scale. Figure
// mode shows the figure without the UI; `window.summit.figure()` is what `summit figure` calls in
// headless Chromium, so the command line and the browser produce the same file.

import { showError } from "./api.js";
import { $, download, downloadUrl, el, pct } from "./dom.js";
import { classByName, classLabel, state, writeHash } from "./state.js";
import { FONT, LEGEND_H, compareNames, graphContent, graphHeading, graphQuery, layoutGraph, legendGroup, ruleText } from "./graph.js";
import { runText } from "./compare.js";
import { diffView, graphPart, imagesSuffix, partCount } from "./mistakes.js";

const FONT_FILES = [["normal", "/static/vendor/DejaVuSans-subset.woff"],
  ["bold", "/static/vendor/DejaVuSans-Bold-subset.woff"]];
const PAD = 16, TITLE_H = 34, LINE_H = 15, THUMB_PX = 2;   // thumbnails: 2 pixels per SVG unit

const dataUrl = (blob) => new Promise((res, rej) => {
  const fr = new FileReader();
  fr.onload = () => res(fr.result);
  fr.onerror = () => rej(fr.error);
  fr.readAsDataURL(blob);
});

let fontCss = null;
/** @font-face rules with the vendored font as data URLs (fetched once). */
function fontFaces() {
  fontCss ??= Promise.all(FONT_FILES.map(async ([weight, url]) => {
    const data = await dataUrl(await (await fetch(url)).blob());
    return `@font-face{font-family:"Summit Sans";font-weight:${weight};src:url(${data.replace("application/octet-stream", "font/woff")}) format("woff")}`;
  })).then((rules) => rules.join("\n"));
  return fontCss;
}

function loadImage(url) {
  return new Promise((res, rej) => {
    const img = new Image();
    img.onload = () => res(img);
    img.onerror = () => rej(new Error(`could not load ${url}`));
    img.src = url;
  });
}

/** Replace every node image by one JPEG thumbnail at the node's size: the feature vis, or the
 * first patch of a dataset-example strip (not the whole strip). */
async function inlineThumbs(svg) {
  const cache = new Map();
  await Promise.all([...svg.querySelectorAll("pattern.node-thumb image")].map(async (im) => {
    const px = Math.ceil(+im.dataset.size * THUMB_PX);
    const key = `${im.getAttribute("href")} ${px}`;
    if (!cache.has(key)) {
      cache.set(key, loadImage(im.getAttribute("href")).then((img) => {
        const canvas = el("canvas", { width: px, height: px });
        const side = Math.min(img.naturalWidth, img.naturalHeight);   // a strip's first square patch
        canvas.getContext("2d").drawImage(img, 0, 0, side, side, 0, 0, px, px);
        return canvas.toDataURL("image/jpeg", 0.9);
      }));
    }
    im.setAttribute("href", await cache.get(key));
    im.setAttribute("width", 1);
    for (const a of ["data-href", "data-width", "data-kind", "data-size"]) im.removeAttribute(a);
  }));
}

/** Caption lines: model and weights, the rule and its thresholds, the class(es). */
function captionLines(g) {
  const m = state.meta;
  const cls = (info) => {
    const acc = classByName(info.name)?.accuracy ?? (info.n_correct != null && info.n_images ? info.n_correct / info.n_images : null);
    return `${info.label ?? classLabel(info.name)}: ${info.n_images} images, top-1 accuracy ${pct(acc)}`;
  };
  const s = g.summit || {};
  if (state.against && s.kind === "diff") {
    const r = m.against, n = s.change.counts.nodes;
    return [`${m.model}: run A ${runText(r.a)} vs run B ${runText(r.b)}, ${m.dataset.n_images} images of ${m.dataset.n_classes} classes in run A`,
      ruleText(g),
      `${s.class.label ?? classLabel(s.class.name)}: ${s.class.n_images_a} images in run A, ${s.class.n_images_b} in run B; ` +
      `change ${s.change.score.toFixed(3)} (1 - weighted Jaccard of the node shares): ${n.lost} units lost, ${n.gained} gained, ${n.kept} kept`];
  }
  const head = `${m.model} (${m.weights} weights), ${m.dataset.n_images} images of ${m.dataset.n_classes} classes`;
  if (diffView() && s.kind === "diff") {   // the class's correct images' graph (A) vs its mistakes' graph (B)
    const n = s.change.counts.nodes;
    return [head, ruleText(g),
      `${s.class.label ?? classLabel(s.class.name)}: ${s.class.n_images_a} correctly classified images vs ${s.class.n_images_b} misclassified; ` +
      `change ${s.change.score.toFixed(3)} (1 - weighted Jaccard of the node shares): ${n.lost} units only in the correct images' graph, ` +
      `${n.gained} only in the mistakes' graph, ${n.kept} in both`];
  }
  const c = classByName(state.selected);
  if (graphPart() !== "all" && c) return [head, ruleText(g), `${classLabel(c.name)}, ${graphPart()} images only: ${partCount(graphPart(), c)}`];
  return [head, ruleText(g),
    s.kind === "compare" ? `${cls(s.class)}; compared with ${cls(s.class_b)}` : cls(s.class || { name: state.selected })];
}

/** The figure as a standalone <svg> (inline: thumbnails and font embedded as data URLs). */
async function figureSvg({ inline = true } = {}) {
  const g = state.graph;
  if (!g) throw new Error("no graph to export yet: pick a class");
  const L = layoutGraph(g, state.hideLe, state.edgeMin / 100);
  const lines = captionLines(g);
  const W = Math.ceil(Math.max(L.width, 800, ...lines.map((l) => l.length * 6.4)) + 2 * PAD);
  const H = TITLE_H + L.height + 14 + LEGEND_H + 10 + lines.length * LINE_H + PAD;
  const svg = d3.create("svg").attr("xmlns", "http://www.w3.org/2000/svg")
    .attr("width", W).attr("height", H).attr("viewBox", `0 0 ${W} ${H}`)
    .attr("font-family", FONT).attr("font-size", 11).attr("class", "figure")
    .attr("data-class", state.selected).attr("data-compare", L.compare && !state.against && !diffView() ? state.compareWith : null)
    .attr("data-against", state.against ? "1" : null).attr("data-images", state.images !== "all" ? state.images : null);
  if (inline) svg.append("style").text(await fontFaces());
  svg.append("rect").attr("width", W).attr("height", H).attr("fill", "#fff");
  svg.append("text").attr("class", "title").attr("x", PAD).attr("y", 22).attr("font-size", 15)
    .attr("font-weight", "bold").attr("fill", "#1d232b")
    .text(graphHeading(L));
  svg.append(() => graphContent(L)).attr("transform", `translate(${(W - L.width) / 2},${TITLE_H})`);
  svg.append(() => legendGroup(L, { a: compareNames.a, b: compareNames.b }))
    .attr("transform", `translate(${PAD},${TITLE_H + L.height + 14})`);
  const cap = svg.append("g").attr("class", "caption").attr("font-size", 10.5).attr("fill", "#3c4550")
    .attr("transform", `translate(${PAD},${TITLE_H + L.height + 14 + LEGEND_H + 10})`);
  lines.forEach((t, i) => cap.append("text").attr("y", 10 + i * LINE_H).text(t));
  if (inline) await inlineThumbs(svg.node());
  return { node: svg.node(), w: W, h: H };
}

const serialize = (node) => new XMLSerializer().serializeToString(node);

async function figurePng(scale) {
  const { node, w, h } = await figureSvg();
  const url = URL.createObjectURL(new Blob([serialize(node)], { type: "image/svg+xml" }));
  try {
    const img = await loadImage(url);
    await img.decode();
    const canvas = el("canvas", { width: Math.round(w * scale), height: Math.round(h * scale) });
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.drawImage(img, 0, 0, w, h);
    return await new Promise((res) => canvas.toBlob(res, "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

function baseName() {
  if (state.against) return `summit-${state.selected}-run-a-vs-b`;
  return `summit-${state.selected}${state.compare && state.compareWith ? `-vs-${state.compareWith}` : ""}${imagesSuffix()}`;
}

function downloadJson() {
  if (!state.selected) return showError(new Error("pick a class first"));
  const q = graphQuery();
  if (state.against) {   // the class's run diff, as /api/against answers it
    q.set("class", state.selected);
    return downloadUrl(`/api/against?${q}`, `${baseName()}.json`);
  }
  if (diffView()) {   // the class's correct-vs-wrong diff, as /api/mistakes answers it
    q.set("class", state.selected);
    return downloadUrl(`/api/mistakes?${q}`, `${baseName()}.json`);
  }
  if (graphPart() !== "all") q.set("images", graphPart());
  if (state.compare && state.compareWith) q.set("compare", state.compareWith);
  downloadUrl(`/api/export/${encodeURIComponent(state.selected)}.json?${q}`, `${baseName()}.json`);
}

// ---------------------------------------------------------------- figure mode
/** Draw the figure (not inlined: same drawing, image URLs) in place of the interactive graph. */
export async function drawFigure() {
  const { node } = await figureSvg({ inline: false });
  node.removeAttribute("width");
  node.removeAttribute("height");
  $("#graph").replaceChildren(node);
}

export function setFigureMode(on) {
  state.figure = on;
  document.body.classList.toggle("figure-mode", on);
  $("#figure-bar").hidden = !on;
  writeHash();
  return on && state.graph ? drawFigure() : null;
}

/** What `summit figure` calls: the figure as SVG text or as a PNG data URL. */
async function figure({ format = "svg", scale = 2 } = {}) {
  if (format === "png") return dataUrl(await figurePng(scale));
  return serialize((await figureSvg()).node);
}

export function wireExport(redraw) {
  $("#download-json").addEventListener("click", downloadJson);
  $("#download-svg").addEventListener("click", () => figureSvg()
    .then(({ node }) => download(new Blob([serialize(node)], { type: "image/svg+xml" }), `${baseName()}.svg`))
    .catch(showError));
  $("#download-png").addEventListener("click", () => figurePng(+$("#png-scale").value)
    .then((blob) => download(blob, `${baseName()}.png`)).catch(showError));
  $("#figure-toggle").addEventListener("click", () => setFigureMode(true)?.catch(showError));
  $("#figure-exit").addEventListener("click", () => { setFigureMode(false); redraw(); });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && state.figure) { setFigureMode(false); redraw(); }
  });
  window.summit = {
    figure,
    graphReady: () => !!state.graph && !$("#graph").classList.contains("busy"),
    error: () => document.body.dataset.error || null,
  };
}
