// The dead letters (admin): the events the workers could not store, with
// why, and putting them back on the stream — one, the selected, or all,
// each after a confirmation; the list reloads after a replay.

import { api } from "./api.js";
import { h, fmt, confirmDialog, timeEl } from "./dom.js";

const PAGE = 100;

export function mountDeadLetters(main, ctx) {
  const section = h("section", { class: "dlq" }, h("h2", null, "Dead letters"));
  main.append(section);
  if (!ctx.isAdmin()) {
    section.append(h("p", { class: "error", role: "alert", testid: "error" }, "Dead letters need a key with the admin scope; this key can only query."));
    return { update: (loc) => loc.pathname === "/dead-letters", escape: () => false, destroy() {} };
  }
  const total = h("span", { class: "total", testid: "dlq-total" });
  const outcome = h("p", { class: "notice", role: "status", testid: "dlq-outcome", hidden: true });
  const error = h("p", { class: "error", role: "alert", testid: "error", hidden: true });
  const list = h("div", { class: "dlq-list", testid: "dlq-list" });
  const more = h("button", { type: "button", class: "more", hidden: true, testid: "dlq-more" }, `Show ${PAGE} more`);
  const replaySelected = h("button", { type: "button", testid: "dlq-replay-selected", disabled: true }, "Replay selected");
  const replayAll = h("button", { type: "button", class: "danger", testid: "dlq-replay-all" }, "Replay all");
  section.append(h("div", { class: "bar" }, total, h("span", { class: "spacer" }), replaySelected, replayAll), outcome, error, list, more);
  let cursor = null;
  let alive = true;

  const selected = () => [...list.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
  const refreshSelection = () => {
    const n = selected().length;
    replaySelected.disabled = n === 0;
    replaySelected.textContent = n ? `Replay selected (${n})` : "Replay selected";
  };

  function entry(d) {
    const ev = d.event;
    const check = h("input", { type: "checkbox", value: d.id, "aria-label": `select ${d.id}`, disabled: !ev, on: { change: refreshSelection } });
    const replay = h("button", { type: "button", testid: "dlq-replay", disabled: !ev, title: ev ? "Put it back on the stream" : "It does not decode: a replay would fail again" }, "Replay");
    replay.addEventListener("click", () => doReplay({ ids: [d.id] }, `Replay dead letter ${d.id}?`));
    return h("div", { class: "dlq-row", testid: "dlq-row", dataset: { id: d.id } },
      h("div", { class: "head" }, check,
        h("span", { class: "mono" }, d.id),
        h("span", { class: "reason", testid: "dlq-reason" }, d.reason || "unknown reason"),
        h("span", { class: "deliveries" }, d.deliveries ? `${d.deliveries} deliveries` : ""),
        d.last_failure ? h("span", null, "last failure ", timeEl(d.last_failure)) : null,
        h("span", { class: "spacer" }), replay),
      d.error ? h("p", { class: "why" }, d.error) : null,
      d.decode_error ? h("p", { class: "why bad" }, `Not replayable: ${d.decode_error}`) : null,
      ev ? h("p", { class: "what" }, h("b", null, ev.service), " ", ev.message) : null,
      ev ? h("details", null, h("summary", null, "Payload"), h("pre", { class: "json", testid: "dlq-payload" }, JSON.stringify(ev, null, 2))) : null);
  }

  async function load(reset) {
    error.hidden = true;
    if (reset) cursor = null;
    try {
      const pairs = new URLSearchParams({ limit: String(PAGE) });
      if (cursor) pairs.set("cursor", cursor);
      const page = await api(`/v1/dlq?${pairs}`);
      if (!alive) return;
      if (reset) list.replaceChildren();
      list.append(...page.entries.map(entry));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      total.textContent = `${fmt.format(page.total)} waiting`;
      if (!list.childElementCount) list.append(h("p", { class: "empty", testid: "empty" }, "No dead letters. Events the workers cannot store wait here until replayed."));
      replayAll.disabled = page.total === 0;
      refreshSelection();
    } catch (e) {
      if (!alive) return;
      error.textContent = e.text || e.message;
      error.hidden = false;
    }
  }

  async function doReplay(body, question) {
    if (!(await confirmDialog(question, "Replay"))) return;
    outcome.hidden = true;
    try {
      const r = await api("/v1/dlq/replay", { method: "POST", body });
      const parts = [`Replayed ${fmt.format(r.replayed.length)}`];
      if (r.not_replayable.length) parts.push(`${fmt.format(r.not_replayable.length)} not replayable`);
      if (r.not_found.length) parts.push(`${fmt.format(r.not_found.length)} already gone`);
      if (r.truncated) parts.push("more remain (MAX_REPLAY): replay all again");
      outcome.textContent = `${parts.join("; ")}.`;
      outcome.hidden = false;
    } catch (e) {
      error.textContent = `Replay failed: ${e.text || e.message}`;
      error.hidden = false;
    }
    await load(true);
  }

  replaySelected.addEventListener("click", () => {
    const ids = selected();
    if (ids.length) doReplay({ ids }, `Replay ${ids.length} selected dead letter${ids.length === 1 ? "" : "s"}?`);
  });
  replayAll.addEventListener("click", () => doReplay({ all: true }, "Replay every dead letter waiting now?"));
  more.addEventListener("click", () => load(false));
  load(true);

  return {
    update: (loc) => loc.pathname === "/dead-letters",
    escape: () => false,
    destroy() {
      alive = false;
    },
  };
}
