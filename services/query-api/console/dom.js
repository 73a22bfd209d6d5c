// Building the page from data without ever parsing data as HTML: elements
// are made with createElement and every value goes in as a text node or
// an attribute. Nothing in the console uses innerHTML.

/**
 * h("div", {class: "row", testid: "x", on: {click}, attrs: {title}}, ...children)
 * Children: nodes, strings (as text), arrays, or null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "testid") el.dataset.testid = v;
      else if (k === "text") el.textContent = v;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** An SVG element (for the histogram and sparklines). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") el.textContent = v;
    else if (k === "testid") el.dataset.testid = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c) el.appendChild(c);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const local = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false,
});

const localShort = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false,
});

/** A time in the browser's zone. */
export function localTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : local.format(d);
}

export function shortTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : localShort.format(d);
}

/** A <time> showing the local time, UTC on hover. */
export function timeEl(iso, short = false) {
  const d = new Date(iso);
  const utc = Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").replace("Z", " UTC");
  return h("time", { datetime: iso, title: utc }, short ? shortTime(iso) : localTime(iso));
}

/** At most `n` characters of `s`, and whether it was cut. */
export function cut(s, n) {
  const chars = Array.from(s);
  return chars.length > n ? [chars.slice(0, n).join(""), true] : [s, false];
}

export const fmt = new Intl.NumberFormat();

/** Copies text: the Clipboard API where the page may use it, else a
 * selection in a throwaway textarea (plain http on another host). */
export async function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through
    }
  }
  const area = h("textarea", { class: "offscreen", readonly: true });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** Whether the keyboard focus is in a field that takes typing. */
export function typing(target) {
  const t = target && target.tagName;
  return t === "INPUT" || t === "TEXTAREA" || t === "SELECT" || (target && target.isContentEditable);
}

/** A modal confirmation (a <dialog>); resolves true when confirmed. */
export function confirmDialog(message, action) {
  return new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      dialog.remove();
      resolve(ok);
    };
    const dialog = h("dialog", { class: "confirm", testid: "confirm-dialog" },
      h("p", null, message),
      h("div", { class: "actions" },
        h("button", { type: "button", testid: "confirm-cancel", on: { click: () => done(false) } }, "Cancel"),
        h("button", { type: "button", class: "danger", testid: "confirm-ok", on: { click: () => done(true) } }, action)));
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}
