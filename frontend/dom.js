// Small DOM and formatting helpers shared by the views.

export const $ = (sel) => document.querySelector(sel);

/** createElement with attributes ("text" sets textContent, "onX" adds a listener) and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  e.append(...children.filter((c) => c != null));
  return e;
}

/** A class name that may wrap after its underscores (<wbr>; no truncation, text unchanged). */
export function breakable(name, attrs = {}) {
  const parts = name.split("_");
  const last = parts.length - 1;
  return el("span", attrs, ...parts.flatMap((p, i) => (i < last ? [`${p}_`, document.createElement("wbr")] : [p])));
}

export const pct = (x) => (x == null ? "–" : `${Math.round(100 * x)}%`);
export const fmt = (x) => (x == null ? "–" : d3.format(".3~s")(x));

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

/** Save a URL's content under a file name through a temporary link. */
export function downloadUrl(href, name) {
  const a = el("a", { href, download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

/** Save a blob under a file name. */
export function download(blob, name) {
  const href = URL.createObjectURL(blob);
  downloadUrl(href, name);
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}

/** CSS crop of patch `i` out of a dataset-example strip (K square patches side by side). */
export function cropHtml(url, i, size) {
  const box = el("div", { class: "crop" });
  if (size) box.style.width = box.style.height = `${size}px`;
  const img = el("img", { src: url, alt: "", loading: "lazy", class: "patch" });
  img.style.left = `-${i * 100}%`;
  box.append(img);
  return box;
}
