// The services view: every service the rollup knows, with its counts for
// the last complete hour and the last 24 hours, when it was last seen, and
// a sparkline of its last 24 hours (GET /v1/services).

import { api } from "./api.js";
import { h, svg, fmt, timeEl } from "./dom.js";
import { searchUrl } from "./searchurl.js";

function sparkline(hourly) {
  const w = 120;
  const ht = 24;
  const max = Math.max(1, ...hourly.map((x) => x.count));
  const step = w / Math.max(1, hourly.length);
  const chart = svg("svg", { class: "spark", viewBox: `0 0 ${w} ${ht}`, width: w, height: ht, role: "img", "aria-label": "events per hour, last 24 hours" });
  hourly.forEach((x, i) => {
    const bh = x.count ? Math.max(1, (x.count / max) * (ht - 2)) : 0;
    chart.append(svg("rect", { x: i * step, y: ht - bh, width: Math.max(1, step - 1), height: bh }, svg("title", { text: `${fmt.format(x.count)} events in the hour from ${new Date(x.hour).toLocaleString()}` })));
  });
  return chart;
}

export function mountServices(main) {
  const body = h("tbody");
  const table = h("table", { class: "services", testid: "services" },
    h("thead", null, h("tr", null,
      h("th", { scope: "col" }, "Service"),
      h("th", { scope: "col", class: "num", title: "the current clock hour so far" }, "This hour"),
      h("th", { scope: "col", class: "num", title: "the last complete clock hour" }, "Last hour"),
      h("th", { scope: "col", class: "num", title: "the 24 complete hours before this one" }, "Last 24 h"),
      h("th", { scope: "col" }, "Last seen"),
      h("th", { scope: "col" }, "24 h"))),
    body);
  const status = h("p", { class: "loading" }, "Loading services…");
  main.append(h("section", { class: "services-view" }, h("h2", null, "Services"), status, table));
  let alive = true;
  api("/v1/services")
    .then((r) => {
      if (!alive) return;
      status.remove();
      if (!r.services.length) {
        table.replaceWith(h("p", { class: "empty", testid: "empty" }, "No services yet: events sent to the gateway (POST /v1/events) show up here once stored."));
        return;
      }
      for (const s of r.services) {
        const link = searchUrl({ services: [s.service], range: "1h", q: "", order: "desc", metadata: [] });
        body.append(h("tr", { testid: "service-row", dataset: { service: s.service } },
          h("th", { scope: "row" }, h("a", { href: link }, s.service)),
          h("td", { class: "num" }, fmt.format(s.current_hour || 0)),
          h("td", { class: "num" }, fmt.format(s.last_hour || 0)),
          h("td", { class: "num" }, fmt.format(s.last_24h || 0)),
          h("td", null, s.last_seen ? timeEl(s.last_seen) : "—"),
          h("td", null, sparkline(s.hourly || []))));
      }
    })
    .catch((e) => {
      if (alive) status.replaceWith(h("p", { class: "error", role: "alert", testid: "error" }, e.text || e.message));
    });
  return {
    update: (loc) => loc.pathname === "/services",
    escape: () => false,
    destroy() {
      alive = false;
    },
  };
}
