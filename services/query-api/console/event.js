// One event in full: its fields, the message, the metadata as a tree
// whose values add themselves as filters when clicked, "copy as JSON",
// and its permalink /events/<id>, which also loads on its own (this
// module's view).

import { api } from "./api.js";
import { h, copy, timeEl } from "./dom.js";
import { searchUrl } from "./searchurl.js";

/** Metadata leaves as [path, value, filterable]: a value reached through
 * objects only, by keys without dots, can be a `metadata.<path>` filter. */
function leaves(value, path = [], out = []) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (!keys.length) out.push([path, value, false]);
    for (const k of keys) leaves(value[k], [...path, k], out);
  } else {
    const filterable = !Array.isArray(value) && path.every((k) => k && !k.includes("."));
    out.push([path, value, filterable]);
  }
  return out;
}

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The event's panel. `onFilter(path, value)` adds a metadata filter;
 * `onClose` closes the panel (absent on the permalink page). */
export function renderEvent(event, { onFilter, onClose }) {
  const status = h("span", { class: "status", role: "status" });
  const json = JSON.stringify(event, null, 2);
  const permalink = `/events/${encodeURIComponent(event.id)}`;
  const fields = h("dl", { class: "fields" },
    h("dt", null, "Time"), h("dd", { testid: "event-time" }, timeEl(event.timestamp)),
    h("dt", null, "Service"), h("dd", { testid: "event-service" }, event.service),
    h("dt", null, "Id"), h("dd", { class: "mono" }, event.id),
    event.event_id ? [h("dt", null, "Event id"), h("dd", { class: "mono" }, event.event_id)] : null,
    h("dt", null, "Ingested"), h("dd", null, timeEl(event.ingested_at)));
  const meta = event.metadata === undefined ? [] : leaves(event.metadata);
  const tree = h("table", { class: "metadata", testid: "event-metadata" },
    h("tbody", null, meta.map(([path, value, filterable]) => {
      const text = show(value);
      const cell = filterable && onFilter
        ? h("button", { type: "button", class: "value", testid: "meta-value", title: "Add as a filter", on: { click: () => onFilter(path.join("."), text) } }, text)
        : h("span", { class: "value", title: filterable ? "" : "not a metadata.<key> filter (an array, or a key with a dot)" }, text);
      return h("tr", null, h("th", { scope: "row", class: "mono" }, path.join(".") || "(metadata)"), h("td", null, cell));
    })));
  return h("article", { class: "event", testid: "event-detail", dataset: { id: event.id } },
    h("header", null,
      h("h2", null, "Event"),
      h("a", { href: permalink, class: "button", testid: "event-permalink", title: "A link that opens this event" }, "Permalink"),
      h("button", { type: "button", testid: "event-copy", on: { click: async () => (status.textContent = (await copy(json)) ? "Copied." : "Cannot copy here; select the JSON below.") } }, "Copy as JSON"),
      onClose ? h("button", { type: "button", class: "close", testid: "event-close", "aria-label": "Close (Esc)", on: { click: onClose } }, "×") : null,
      status),
    fields,
    h("h3", null, "Message"),
    h("pre", { class: "message", testid: "event-message" }, event.message),
    h("h3", null, "Metadata"),
    meta.length ? tree : h("p", { class: "hint" }, "No metadata."),
    h("details", null, h("summary", null, "JSON"), h("pre", { class: "json", testid: "event-json" }, json)));
}

/** The permalink page: the event alone, loaded by its id. */
export function mountEvent(main, ctx, id) {
  const box = h("section", { class: "event-page" }, h("p", { class: "loading" }, "Loading the event…"));
  main.append(box);
  let alive = true;
  api(`/v1/events/${encodeURIComponent(id)}`)
    .then((event) => {
      if (!alive) return;
      const around = (ms) => new Date(new Date(event.timestamp).getTime() + ms).toISOString();
      const near = { services: [event.service], range: null, from: around(-3600e3), to: around(3600e3), q: "", order: "desc", metadata: [] };
      box.replaceChildren(
        h("p", null, h("a", { href: searchUrl(near), testid: "event-around" }, `Events of ${event.service} in the hour around it`)),
        renderEvent(event, { onFilter: (path, value) => ctx.navigate(searchUrl({ ...near, metadata: [[path, value]] })) }));
    })
    .catch((e) => {
      if (!alive) return;
      const text = e.status === 404 ? "No event has this id (it may have expired with its day's partition)." : e.text || e.message;
      box.replaceChildren(h("p", { class: "error", role: "alert", testid: "error" }, text));
    });
  return {
    update: (loc) => loc.pathname === `/events/${encodeURIComponent(id)}` || loc.pathname === `/events/${id}`,
    escape: () => false,
    destroy() {
      alive = false;
    },
  };
}
