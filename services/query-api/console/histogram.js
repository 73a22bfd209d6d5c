// The histogram above the results: one bar per bucket of
// GET /v1/stats/histogram, the figure on hover, and a drag across the
// chart to zoom into that sub-range (a new search, so Back zooms out).

import { h, svg, clear, fmt, shortTime, localTime } from "./dom.js";

const HEIGHT = 90;

/** Draws `data` into `el`; `zoom(fromIso, toIso)` runs after a drag. */
export function drawHistogram(el, data, zoom) {
  clear(el);
  const buckets = data.buckets || [];
  if (!buckets.length) return;
  const width = Math.max(200, el.clientWidth || 800);
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const t0 = new Date(data.from).getTime();
  const t1 = new Date(data.to).getTime();
  const span = Math.max(1, t1 - t0);
  const x = (t) => ((new Date(t).getTime() - t0) / span) * width;
  const readout = h("div", { class: "readout", testid: "histogram-readout" }, `${fmt.format(data.total)} events · ${data.bucket_seconds >= 3600 ? `${data.bucket_seconds / 3600} h` : `${data.bucket_seconds} s`} buckets · drag to zoom`);
  const chart = svg("svg", { class: "bars", viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT, preserveAspectRatio: "none", role: "img", "aria-label": "events over time" });
  for (const b of buckets) {
    const bx = x(b.start);
    const bw = Math.max(1, x(b.end) - bx - 1);
    const bh = b.count ? Math.max(2, (b.count / max) * (HEIGHT - 4)) : 0;
    const label = `${fmt.format(b.count)} events, ${localTime(b.start)} – ${localTime(b.end)}`;
    const bar = svg("rect", { x: bx, y: HEIGHT - bh, width: bw, height: bh, class: "bar", testid: "histogram-bar", "data-count": b.count }, svg("title", { text: label }));
    // A transparent full-height target, so thin bars are easy to hover.
    const hit = svg("rect", { x: bx, y: 0, width: Math.max(1, x(b.end) - bx), height: HEIGHT, class: "hit" });
    hit.addEventListener("mouseenter", () => (readout.textContent = label));
    chart.append(bar, hit);
  }
  const selection = svg("rect", { class: "selection", x: 0, y: 0, width: 0, height: HEIGHT, visibility: "hidden" });
  chart.append(selection);
  const axis = h("div", { class: "axis" }, h("span", null, shortTime(data.from)), h("span", null, shortTime(data.to)));
  el.append(readout, chart, axis);

  // Drag to zoom: positions in the chart's own coordinates.
  const at = (e) => {
    const r = chart.getBoundingClientRect();
    return Math.min(width, Math.max(0, ((e.clientX - r.left) / Math.max(1, r.width)) * width));
  };
  let start = null;
  chart.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    start = at(e);
    chart.setPointerCapture(e.pointerId);
    selection.setAttribute("x", start);
    selection.setAttribute("width", 0);
    selection.setAttribute("visibility", "visible");
  });
  chart.addEventListener("pointermove", (e) => {
    if (start === null) return;
    const now = at(e);
    selection.setAttribute("x", Math.min(start, now));
    selection.setAttribute("width", Math.abs(now - start));
  });
  const finish = (e) => {
    if (start === null) return;
    const end = at(e);
    const [a, b] = [Math.min(start, end), Math.max(start, end)];
    start = null;
    selection.setAttribute("visibility", "hidden");
    // A click is not a drag.
    if (b - a < 4) return;
    const time = (px) => new Date(t0 + (px / width) * span);
    // Whole seconds: what the form can show and edit.
    const from = new Date(Math.floor(time(a).getTime() / 1000) * 1000);
    const to = new Date(Math.ceil(time(b).getTime() / 1000) * 1000);
    if (to > from) zoom(from.toISOString(), to.toISOString());
  };
  chart.addEventListener("pointerup", finish);
  chart.addEventListener("pointercancel", () => {
    start = null;
    selection.setAttribute("visibility", "hidden");
  });
}
