// JSON API client and the URLs of the run's images.

/** GET a JSON endpoint; a non-2xx answer throws its one-line `error`. */
export async function api(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

/** Show an error line at the bottom of the page for a few seconds. */
export function showError(err) {
  const box = document.querySelector("#status");
  box.textContent = String(err.message || err);
  box.hidden = false;
  document.body.dataset.error = box.textContent;   // for `summit figure` and tests
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

const seg = encodeURIComponent;
export const examplesUrl = (layer, ch) => `/api/examples/${seg(layer)}/${ch}.jpg`;
/** Feature vis URLs carry the render stamp `v`, so an image rendered anew is fetched anew. */
export const fvUrl = (layer, ch, v) => `/api/featurevis/${seg(layer)}/${ch}.png?v=${v}`;
export const diversityUrl = (layer, ch, i, v) => `/api/diversity/${seg(layer)}/${ch}/${i}.png?v=${v}`;
