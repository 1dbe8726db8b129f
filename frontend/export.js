// Downloads of the current graph: JSON (from the server), SVG (thumbnails inlined) and PNG.

import { showError } from "./api.js";
import { $, download, el } from "./dom.js";
import { state } from "./state.js";
import { graphQuery } from "./graph.js";

async function inlinedSvg() {
  const svg = $("#graph svg");
  if (!svg) throw new Error("no graph to download yet: pick a class");
  const clone = svg.cloneNode(true);
  clone.querySelectorAll(".faded, .active, .focus").forEach((n) => n.classList.remove("faded", "active", "focus"));
  const cache = new Map();
  const toData = (url) => {
    if (!cache.has(url)) {
      cache.set(url, fetch(url).then((r) => r.blob()).then((b) => new Promise((res) => {
        const fr = new FileReader();
        fr.onload = () => res(fr.result);
        fr.readAsDataURL(b);
      })));
    }
    return cache.get(url);
  };
  await Promise.all([...clone.querySelectorAll("image")].map(async (im) => {
    im.setAttribute("href", await toData(im.getAttribute("href")));
  }));
  return { text: new XMLSerializer().serializeToString(clone), w: +svg.getAttribute("width"), h: +svg.getAttribute("height") };
}

function baseName() {
  return `summit-${state.selected}${state.compare && state.compareWith ? `-vs-${state.compareWith}` : ""}`;
}

function downloadJson() {
  if (!state.selected) return showError(new Error("pick a class first"));
  const q = graphQuery();
  if (state.compare && state.compareWith) q.set("compare", state.compareWith);
  const a = el("a", { href: `/api/export/${encodeURIComponent(state.selected)}.json?${q}`, download: `${baseName()}.json` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function downloadSvg() {
  const { text } = await inlinedSvg();
  download(new Blob([text], { type: "image/svg+xml" }), `${baseName()}.svg`);
}

async function downloadPng() {
  const { text, w, h } = await inlinedSvg();
  const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
  try {
    const img = new Image();
    await new Promise((res, rej) => { img.onload = res; img.onerror = () => rej(new Error("could not render the SVG")); img.src = url; });
    const scale = 2;
    const canvas = el("canvas", { width: w * scale, height: h * scale });
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.drawImage(img, 0, 0, w, h);
    const blob = await new Promise((res) => canvas.toBlob(res, "image/png"));
    download(blob, `${baseName()}.png`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

export function wireExport() {
  $("#download-json").addEventListener("click", downloadJson);
  $("#download-svg").addEventListener("click", () => downloadSvg().catch(showError));
  $("#download-png").addEventListener("click", () => downloadPng().catch(showError));
}
