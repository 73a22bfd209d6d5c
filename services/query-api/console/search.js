// The search view: the form, the histogram, the results (100 at a time,
// "more" follows the keyset cursor), export links, the live tail, and the
// event detail over the list. The whole search lives in the URL, with the
// API's own parameter names (plus `range` for the quick picks), so a link
// reproduces it and Back and Forward move between searches.

import { api, query, ApiError } from "./api.js";
import { RANGES, readSearch, searchUrl } from "./searchurl.js";
import { h, clear, cut, fmt, timeEl } from "./dom.js";
import { drawHistogram } from "./histogram.js";
import { Tail } from "./tail.js";
import { renderEvent } from "./event.js";

const PAGE = 100;
/** Characters of a message and of metadata shown in a collapsed row. */
const MESSAGE_CHARS = 300;
const METADATA_CHARS = 200;
/** Rows the tail keeps above the results before dropping its oldest. */
const TAIL_ROWS = 5000;

/** The window [from, to) of a search, as ISO strings, resolved now. */
function resolveWindow(s) {
  const now = Date.now();
  if (s.range) return { from: new Date(now - RANGES[s.range]).toISOString(), to: new Date(now).toISOString() };
  const to = s.to || new Date(now).toISOString();
  const from = s.from || new Date(new Date(to).getTime() - RANGES["1h"]).toISOString();
  return { from, to };
}

/** The API's parameters for a search over a resolved window. */
function apiPairs(s, win) {
  const pairs = s.services.map((x) => ["service", x]);
  pairs.push(["from", win.from], ["to", win.to]);
  if (s.q) pairs.push(["q", s.q]);
  for (const [k, v] of s.metadata) pairs.push([`metadata.${k}`, v]);
  pairs.push(["order", s.order]);
  return pairs;
}

/** A local datetime-local value for an ISO time. */
function localInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Whether a tailed event matches the search's text and metadata filters
 * (the tail itself filters by service), as the API would. */
function matches(event, s) {
  if (s.q && !event.message.toLowerCase().includes(s.q.toLowerCase())) return false;
  for (const [path, want] of s.metadata) {
    let v = event.metadata;
    for (const key of path.split(".")) v = v && typeof v === "object" && !Array.isArray(v) ? v[key] : undefined;
    if (v === undefined || (v !== null && typeof v === "object")) return false;
    if (String(v) !== want && JSON.stringify(v) !== want) return false;
  }
  return true;
}

/** One result row: collapsed to a line, expandable, opening the event. */
function row(event, open) {
  const [message, messageCut] = cut(event.message, MESSAGE_CHARS);
  const meta = event.metadata === undefined ? "" : JSON.stringify(event.metadata);
  const [metaShort, metaCut] = cut(meta, METADATA_CHARS);
  const body = h("div", { class: "cells" },
    h("span", { class: "ts" }, timeEl(event.timestamp)),
    h("span", { class: "svc", title: event.service }, event.service),
    h("span", { class: "msg", testid: "row-message" }, messageCut ? `${message}…` : message),
    meta ? h("span", { class: "meta", testid: "row-metadata" }, metaCut ? `${metaShort}…` : metaShort) : null);
  const r = h("div", { class: "row", testid: "result-row", dataset: { id: event.id }, tabindex: "0", role: "button", "aria-label": `event ${event.id}` }, body);
  if (messageCut || metaCut) {
    const more = h("button", { type: "button", class: "expand", title: "Show the whole row", testid: "row-expand", "aria-expanded": "false" }, "⋯");
    more.addEventListener("click", (e) => {
      e.stopPropagation();
      const open = r.classList.toggle("expanded");
      more.setAttribute("aria-expanded", String(open));
      const full = r.querySelector(".full");
      if (open && !full) {
        r.append(h("div", { class: "full" },
          h("pre", { class: "msg-full" }, event.message),
          meta ? h("pre", { class: "meta-full" }, JSON.stringify(event.metadata, null, 2)) : null));
      } else if (full) full.remove();
    });
    r.append(more);
  }
  r.addEventListener("click", () => open(event));
  r.addEventListener("keydown", (e) => {
    if (e.key === "Enter") open(event);
  });
  return r;
}

export function mountSearch(main, ctx) {
  let search = null;
  let key = null;
  let win = null;
  let cursor = null;
  let shown = 0;
  let loading = null;
  let tail = null;
  let services = [];
  let draft = null;

  // The form.
  const pickerList = h("div", { class: "options" });
  const pickerFilter = h("input", { type: "search", placeholder: "Filter services", "aria-label": "Filter services" });
  const pickerSummary = h("summary", { testid: "service-summary" }, "All services");
  const picker = h("details", { class: "picker", testid: "service-picker", dataset: { field: "service" } }, pickerSummary, pickerFilter, pickerList);
  const rangeButtons = Object.keys(RANGES).map((r) =>
    h("button", { type: "button", class: "range", testid: `range-${r}`, dataset: { range: r }, on: { click: () => pickRange(r) } }, r));
  const fromInput = h("input", { type: "datetime-local", step: "1", name: "from", testid: "search-from", dataset: { field: "from" }, "aria-label": "From (your time zone)" });
  const toInput = h("input", { type: "datetime-local", step: "1", name: "to", testid: "search-to", dataset: { field: "to" }, "aria-label": "To (your time zone)" });
  const qInput = h("input", { type: "search", name: "q", placeholder: "Text in the message  ( / )", testid: "search-q", dataset: { field: "q" }, "aria-label": "Text in the message", maxlength: "200" });
  const filterInput = h("input", { type: "text", placeholder: "metadata key=value", testid: "filter-input", "aria-label": "Metadata filter, key=value", dataset: { field: "metadata" } });
  const orderSelect = h("select", { name: "order", testid: "search-order", dataset: { field: "order" }, "aria-label": "Order" },
    h("option", { value: "desc" }, "Newest first"), h("option", { value: "asc" }, "Oldest first"));
  const chips = h("div", { class: "chips", testid: "filter-chips" });
  const form = h("form", { class: "search-form", testid: "search-form", role: "search" },
    h("div", { class: "line" }, picker, h("div", { class: "ranges", role: "group", "aria-label": "Quick ranges" }, rangeButtons),
      h("label", { class: "abs" }, "From", fromInput), h("label", { class: "abs" }, "To", toInput)),
    h("div", { class: "line" }, qInput,
      h("span", { class: "filter" }, filterInput, h("button", { type: "button", testid: "filter-add", on: { click: addFilterFromInput } }, "Add filter")),
      orderSelect, h("button", { type: "submit", class: "primary", testid: "search-submit" }, "Search")),
    chips);
  let absoluteEdited = false;
  fromInput.addEventListener("input", () => (absoluteEdited = true));
  toInput.addEventListener("input", () => (absoluteEdited = true));
  filterInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && filterInput.value.trim()) {
      e.preventDefault();
      addFilterFromInput();
    }
  });
  pickerFilter.addEventListener("input", () => {
    const f = pickerFilter.value.toLowerCase();
    for (const l of pickerList.children) l.hidden = !l.dataset.service.toLowerCase().includes(f);
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });

  // Around the results.
  const windowLine = h("span", { class: "window", testid: "window" });
  const totalLine = h("span", { class: "total", testid: "total" });
  const exportNd = h("a", { class: "button", download: "", testid: "export-ndjson" }, "Export NDJSON");
  const exportCsv = h("a", { class: "button", download: "", testid: "export-csv" }, "Export CSV");
  const tailToggle = h("button", { type: "button", class: "tail", testid: "tail-toggle", "aria-pressed": "false", on: { click: toggleTail } }, "Live tail");
  const tailPause = h("button", { type: "button", testid: "tail-pause", hidden: true, on: { click: pauseTail } }, "Pause");
  const tailRate = h("span", { class: "rate", testid: "tail-rate", hidden: true });
  const tailState = h("span", { class: "tail-state", testid: "tail-state" });
  const errorBanner = h("div", { class: "error", role: "alert", testid: "error", hidden: true });
  const gapNotice = h("div", { class: "notice", role: "status", testid: "tail-gap", hidden: true });
  const histogram = h("div", { class: "histogram", testid: "histogram" });
  const tailRows = h("div", { class: "results live", testid: "tail-results" });
  const results = h("div", { class: "results", testid: "results", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "more", testid: "more", hidden: true, on: { click: loadMore } }, `Show ${PAGE} more`);
  const empty = h("p", { class: "empty", testid: "empty", hidden: true });
  const detail = h("aside", { class: "detail", hidden: true, "aria-label": "Event" });
  const section = h("section", { class: "search" },
    form,
    h("div", { class: "bar" }, windowLine, totalLine, h("span", { class: "spacer" }), tailRate, tailState, tailPause, tailToggle, exportNd, exportCsv),
    errorBanner, histogram, gapNotice, tailRows, results, empty, more, detail);
  main.append(section);

  api("/v1/services").then((r) => {
    services = r.services.map((s) => s.service);
    fillPicker();
  }).catch(() => {});

  function current() {
    return {
      ...search,
      services: [...pickerList.querySelectorAll("input:checked")].map((c) => c.value),
      q: qInput.value.trim(),
      order: orderSelect.value,
      metadata: draft,
    };
  }

  function fillPicker() {
    const names = [...new Set([...services, ...(search ? search.services : [])])].sort();
    const chosen = new Set(search ? search.services : []);
    pickerList.replaceChildren(...names.map((name) =>
      h("label", { dataset: { service: name } }, h("input", { type: "checkbox", value: name, checked: chosen.has(name), on: { change: summarizePicker } }), name)));
    if (!names.length) pickerList.append(h("p", { class: "hint" }, "No services yet."));
    summarizePicker();
  }

  function summarizePicker() {
    const chosen = [...pickerList.querySelectorAll("input:checked")].map((c) => c.value);
    pickerSummary.textContent = chosen.length === 0 ? "All services" : chosen.length <= 2 ? chosen.join(", ") : `${chosen.slice(0, 2).join(", ")} +${chosen.length - 2}`;
  }

  function renderChips() {
    chips.replaceChildren(...draft.map(([k, v], i) =>
      h("span", { class: "chip", testid: "filter-chip", dataset: { field: `metadata.${k}` } },
        h("span", null, `${k} = ${v}`),
        h("button", { type: "button", "aria-label": `Remove filter ${k}`, testid: "filter-chip-remove", on: { click: () => { draft.splice(i, 1); submit(); } } }, "×"))));
  }

  function addFilterFromInput() {
    const text = filterInput.value.trim();
    const at = text.indexOf("=");
    if (at <= 0) {
      showError(new ApiError(400, "invalid_metadata_filter", "a metadata filter is key=value (dots reach into nested objects: http.status=500)", "metadata"));
      return;
    }
    const k = text.slice(0, at).trim().replace(/^metadata\./, "");
    draft = draft.filter(([x]) => x !== k);
    draft.push([k, text.slice(at + 1).trim()]);
    filterInput.value = "";
    submit();
  }

  function pickRange(r) {
    ctx.navigate(searchUrl({ ...current(), range: r, from: null, to: null }));
  }

  function submit() {
    const s = current();
    if (absoluteEdited) {
      const from = fromInput.value ? new Date(fromInput.value) : null;
      const to = toInput.value ? new Date(toInput.value) : null;
      if ((from && Number.isNaN(from.getTime())) || (to && Number.isNaN(to.getTime()))) {
        showError(new ApiError(400, "invalid_time", "enter a date and time", from ? "to" : "from"));
        return;
      }
      s.range = null;
      s.from = (from || new Date(Date.now() - RANGES["1h"])).toISOString();
      s.to = (to || new Date()).toISOString();
    }
    const url = searchUrl(s);
    // The same search again: run it again (a quick range moves with now).
    if (url === location.pathname + location.search) {
      key = null;
      update(location, history.state);
    } else ctx.navigate(url);
  }

  function showError(e) {
    for (const el of section.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    if (!e) {
      errorBanner.hidden = true;
      return;
    }
    errorBanner.textContent = e.text || e.message;
    errorBanner.hidden = false;
    const field = e.field && (e.field.startsWith("metadata.") ? section.querySelector(`[data-field="${CSS.escape(e.field)}"]`) : form.querySelector(`[data-field="${CSS.escape(e.field)}"]`));
    const target = field || (e.field && e.field.startsWith("metadata") ? filterInput : null);
    if (target) target.setAttribute("aria-invalid", "true");
  }

  function openEvent(event) {
    showDetail(event);
    ctx.navigate(`/events/${encodeURIComponent(event.id)}`, { state: { overlay: true, search: key } });
  }

  function showDetail(event) {
    detail.replaceChildren(renderEvent(event, {
      onClose: closeDetail,
      onFilter: (path, value) => {
        const s = { ...search, metadata: [...search.metadata.filter(([k]) => k !== path), [path, value]] };
        ctx.navigate(searchUrl(s));
      },
    }));
    detail.hidden = false;
    const close = detail.querySelector('[data-testid="event-close"]');
    if (close) close.focus();
  }

  function closeDetail() {
    if (history.state && history.state.overlay) history.back();
    else {
      detail.hidden = true;
      clear(detail);
    }
  }

  async function loadDetail(id) {
    detail.hidden = false;
    detail.replaceChildren(h("p", { class: "loading" }, "Loading the event…"));
    try {
      showDetail(await api(`/v1/events/${encodeURIComponent(id)}`));
    } catch (e) {
      detail.replaceChildren(h("p", { class: "error", role: "alert" }, e.text || e.message));
    }
  }

  async function run() {
    const token = {};
    loading = token;
    stopTail();
    cursor = null;
    shown = 0;
    clear(results);
    clear(tailRows);
    clear(histogram);
    more.hidden = true;
    empty.hidden = true;
    gapNotice.hidden = true;
    showError(null);
    win = resolveWindow(search);
    const pairs = apiPairs(search, win);
    windowLine.replaceChildren(timeEl(win.from), " – ", timeEl(win.to), h("span", { class: "zone" }, ` (${Intl.DateTimeFormat().resolvedOptions().timeZone})`));
    totalLine.textContent = "";
    exportNd.href = `/v1/events/export${query([["format", "ndjson"], ...pairs])}`;
    exportCsv.href = `/v1/events/export${query([["format", "csv"], ...pairs])}`;
    results.setAttribute("aria-busy", "true");
    const buckets = Math.max(10, Math.min(120, Math.floor((histogram.clientWidth || 800) / 10)));
    const hist = api(`/v1/stats/histogram${query([...pairs.filter(([k]) => k !== "order"), ["buckets", buckets]])}`);
    try {
      const page = await api(`/v1/events${query([...pairs, ["limit", PAGE]])}`);
      if (loading !== token) return;
      appendPage(page, true);
    } catch (e) {
      if (loading !== token) return;
      showError(e);
    } finally {
      results.removeAttribute("aria-busy");
    }
    try {
      const data = await hist;
      if (loading !== token) return;
      totalLine.textContent = `${fmt.format(data.total)} events`;
      drawHistogram(histogram, data, (from, to) => ctx.navigate(searchUrl({ ...search, range: null, from, to })));
    } catch (e) {
      if (loading !== token) return;
      histogram.replaceChildren(h("p", { class: "error" }, `Histogram: ${e.text || e.message}`));
    }
  }

  function appendPage(page, first) {
    // One block per page: the browser skips laying out and painting the
    // blocks off screen (content-visibility), 100 checks instead of 10,000.
    const block = h("div", { class: "page" });
    for (const event of page.events) block.append(row(event, openEvent));
    results.append(block);
    shown += page.events.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (first && shown === 0) {
      empty.replaceChildren("No events match this search between ", timeEl(win.from), " and ", timeEl(win.to), ". Widen the time range, pick other services or remove a filter.");
      empty.hidden = false;
    }
    if (first) {
      // After the next paint: what the browser test reads.
      requestAnimationFrame(() => setTimeout(() => performance.mark("eventline:first-rows"), 0));
    }
  }

  async function loadMore() {
    if (!cursor) return;
    const token = loading;
    more.disabled = true;
    try {
      const page = await api(`/v1/events${query([...apiPairs(search, win), ["limit", PAGE], ["cursor", cursor]])}`);
      if (loading === token) appendPage(page, false);
    } catch (e) {
      showError(e);
    } finally {
      more.disabled = false;
    }
  }

  function toggleTail() {
    if (tail) {
      stopTail();
      return;
    }
    gapNotice.hidden = true;
    const s = search;
    let waiting = [];
    tail = new Tail(s.services, {
      onEvent(event) {
        if (!matches(event, s)) return false;
        if (tail.paused) {
          if (waiting.length < TAIL_ROWS) waiting.push(event);
          tailState.textContent = `paused, ${fmt.format(waiting.length)} waiting`;
        } else {
          tailRows.prepend(row(event, openEvent));
          while (tailRows.childElementCount > TAIL_ROWS) tailRows.lastElementChild.remove();
        }
        empty.hidden = true;
        return true;
      },
      onRate(perSecond) {
        tailRate.textContent = `${perSecond.toFixed(perSecond < 10 ? 1 : 0)}/s`;
      },
      onGap(from) {
        gapNotice.replaceChildren("The tail reconnected and events may be missing", from ? [" from ", timeEl(from)] : "", ". Search again to see them.");
        gapNotice.hidden = false;
      },
      onState(state) {
        tailState.textContent = state;
      },
      onResume() {
        const frag = document.createDocumentFragment();
        for (const event of waiting.reverse()) frag.append(row(event, openEvent));
        tailRows.prepend(frag);
        while (tailRows.childElementCount > TAIL_ROWS) tailRows.lastElementChild.remove();
        waiting = [];
      },
    });
    tailToggle.setAttribute("aria-pressed", "true");
    tailToggle.classList.add("on");
    tailPause.hidden = false;
    tailRate.hidden = false;
    tailPause.textContent = "Pause";
  }

  function pauseTail() {
    if (!tail) return;
    if (tail.paused) {
      tail.resume();
      tailPause.textContent = "Pause";
    } else {
      tail.pause();
      tailPause.textContent = "Resume";
    }
  }

  function stopTail() {
    if (tail) tail.stop();
    tail = null;
    tailToggle.setAttribute("aria-pressed", "false");
    tailToggle.classList.remove("on");
    tailPause.hidden = true;
    tailRate.hidden = true;
    tailState.textContent = "";
  }

  function update(loc, state) {
    if (loc.pathname.startsWith("/events/")) {
      // A row opened over this search (Forward brings it back too).
      if (!state || !state.overlay || (key !== null && state.search !== key)) return false;
      const id = decodeURIComponent(loc.pathname.slice("/events/".length));
      const shownId = detail.querySelector('[data-testid="event-detail"]');
      if (detail.hidden || !shownId || shownId.dataset.id !== id) loadDetail(id);
      return true;
    }
    if (loc.pathname !== "/") return false;
    detail.hidden = true;
    clear(detail);
    const k = loc.search;
    if (k === key) return true;
    key = k;
    search = readSearch(loc);
    draft = [...search.metadata];
    absoluteEdited = false;
    qInput.value = search.q;
    orderSelect.value = search.order;
    for (const b of rangeButtons) b.setAttribute("aria-pressed", String(b.dataset.range === search.range));
    const w = resolveWindow(search);
    fromInput.value = localInput(w.from);
    toInput.value = localInput(w.to);
    fromInput.title = `UTC ${w.from}`;
    toInput.title = `UTC ${w.to}`;
    fillPicker();
    renderChips();
    run();
    return true;
  }

  return {
    update,
    escape() {
      if (!detail.hidden) {
        closeDetail();
        return true;
      }
      if (picker.open) {
        picker.open = false;
        return true;
      }
      return false;
    },
    destroy() {
      loading = null;
      stopTail();
    },
  };
}
