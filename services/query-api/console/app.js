// The console's shell: sign-in, the navigation, the pipeline strip, the
// keyboard, and the router. Its only state is the URL (every view reads
// its own from location) and who is signed in; the API key is not kept.

import { api, session, signIn, signOut, whenSignedOut } from "./api.js";
import { h, clear, typing, fmt } from "./dom.js";
import { mountSearch } from "./search.js";
import { mountEvent } from "./event.js";
import { mountServices } from "./services.js";
import { mountDeadLetters } from "./deadletters.js";

const root = document.getElementById("app");
/** The session: {scopes, key_prefix, auth_required}; null when signed out. */
let me = null;
/** The mounted view: {update(location) -> handled?, escape() -> handled?, destroy()}. */
let view = null;
let main = null;
let strip = null;
let stripTimer = null;

const ctx = {
  navigate,
  isAdmin: () => Boolean(me && me.scopes.includes("admin")),
};

function navigate(url, { replace = false, state = null } = {}) {
  history[replace ? "replaceState" : "pushState"](state, "", url);
  route();
}

function route() {
  if (!main) return;
  if (view && view.update(location, history.state)) return;
  if (view) view.destroy();
  view = null;
  clear(main);
  const path = location.pathname;
  const event = path.match(/^\/events\/([^/]+)$/);
  let mounted;
  if (path === "/") mounted = mountSearch(main, ctx);
  else if (event) mounted = mountEvent(main, ctx, decodeURIComponent(event[1]));
  else if (path === "/services") mounted = mountServices(main, ctx);
  else if (path === "/dead-letters") mounted = mountDeadLetters(main, ctx);
  else {
    main.append(h("p", { class: "empty" }, "There is no such page. ", h("a", { href: "/" }, "Search events")));
    mounted = { update: () => false, escape: () => false, destroy() {} };
  }
  view = mounted;
  view.update(location, history.state);
  for (const a of root.querySelectorAll("nav a")) {
    const here = a.getAttribute("href") === path || (a.getAttribute("href") === "/" && event);
    a.classList.toggle("current", Boolean(here));
  }
}

function stop() {
  if (view) view.destroy();
  view = null;
  main = null;
  clearInterval(stripTimer);
  stripTimer = null;
}

function showSignIn(notice) {
  stop();
  me = null;
  const input = h("input", {
    type: "password", id: "key", name: "key", autocomplete: "off", spellcheck: "false",
    placeholder: "evl_…", required: true, testid: "api-key",
  });
  const button = h("button", { type: "submit", testid: "signin-submit" }, "Sign in");
  const error = h("p", { class: "error", role: "alert", testid: "signin-error", hidden: !notice }, notice || "");
  // POST, so that even a submit the script never sees sends the key in a
  // body, not in the URL.
  const form = h("form", { class: "signin", testid: "signin-form", method: "post", autocomplete: "off" },
    h("h1", null, "eventline"),
    h("label", { for: "key" }, "API key"),
    input,
    h("p", { class: "hint" }, "A key with the query scope; an admin key also shows the dead letters. It is exchanged for a session cookie and not kept by this page."),
    button,
    error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    error.hidden = true;
    try {
      me = await signIn(key);
      input.value = "";
      showApp();
    } catch (err) {
      input.value = "";
      error.textContent = `Sign-in failed: ${err.text || err.message}`;
      error.hidden = false;
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(root).append(form);
  input.focus();
}

function showApp() {
  const nav = h("nav", null,
    h("a", { href: "/", testid: "nav-search" }, "Search"),
    h("a", { href: "/services", testid: "nav-services" }, "Services"),
    ctx.isAdmin() ? h("a", { href: "/dead-letters", testid: "nav-dead-letters" }, "Dead letters") : null);
  const who = me.auth_required
    ? h("span", { class: "who", title: `scopes: ${me.scopes.join(", ")}` }, `key evl_${me.key_prefix}…`)
    : h("span", { class: "who warn", title: "AUTH_REQUIRED=false" }, "no sign-in required");
  const out = me.auth_required
    ? h("button", { type: "button", class: "link", testid: "sign-out", on: { click: doSignOut } }, "Sign out")
    : null;
  strip = h("div", { class: "strip", testid: "pipeline-strip", role: "status" }, "Pipeline: …");
  main = h("main", { id: "main" });
  clear(root).append(
    h("header", { class: "top" }, h("a", { class: "brand", href: "/" }, "eventline"), nav, h("div", { class: "session" }, who, out)),
    strip,
    main);
  refreshStrip();
  stripTimer = setInterval(() => {
    if (!document.hidden) refreshStrip();
  }, 5000);
  route();
}

async function doSignOut() {
  try {
    await signOut();
  } finally {
    showSignIn("Signed out.");
  }
}

async function refreshStrip() {
  const el = strip;
  if (!el) return;
  try {
    const p = await api("/v1/pipeline");
    const lag = p.lag === null ? "unknown" : fmt.format(p.lag);
    el.classList.toggle("warn", p.backpressure || p.dead_letters > 0);
    el.replaceChildren(
      h("span", { title: "entries not yet delivered to the workers" }, "Stream lag ", h("b", { testid: "strip-lag" }, lag)),
      h("span", { title: "delivered, not yet stored" }, "Pending ", h("b", null, fmt.format(p.pending))),
      h("span", { title: `longest shard ${fmt.format(p.longest_stream)} of the high-water mark ${fmt.format(p.stream_high_water)}`, class: p.backpressure ? "bad" : "" },
        "Backpressure ", h("b", { testid: "strip-backpressure" }, p.backpressure ? "on (gateways answer 429)" : "off")),
      h("span", { class: p.dead_letters > 0 ? "bad" : "" }, "Dead letters ", h("b", { testid: "strip-dead-letters" }, fmt.format(p.dead_letters))));
  } catch (e) {
    if (e.status !== 401) el.replaceChildren(`Pipeline state unavailable: ${e.text || e.message}`);
  }
}

// Same-origin links navigate inside the page (Back and Forward work);
// downloads, new tabs and other origins are left to the browser.
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.hasAttribute("download") || a.target || !main) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/") || url.pathname.startsWith("/openapi")) return;
  e.preventDefault();
  navigate(url.pathname + url.search, { state: a.dataset.overlay ? { overlay: true } : null });
});

window.addEventListener("popstate", route);

document.addEventListener("keydown", (e) => {
  if (!main) return;
  if (e.key === "/" && !typing(e.target) && !e.ctrlKey && !e.metaKey && !e.altKey) {
    e.preventDefault();
    if (location.pathname !== "/") navigate("/");
    const q = document.querySelector('[data-testid="search-q"]');
    if (q) q.focus();
  } else if (e.key === "Escape" && !document.querySelector("dialog[open]")) {
    if (view && view.escape()) e.preventDefault();
    else if (typing(e.target)) e.target.blur();
  }
});

whenSignedOut((e) => {
  if (me) showSignIn(`Signed out: ${e.text}`);
});

session()
  .then((s) => {
    me = s;
    showApp();
  })
  .catch((e) => {
    if (e.status === 401) showSignIn();
    else clear(root).append(h("p", { class: "error", role: "alert", testid: "error" }, `The console cannot start: ${e.text || e.message}`));
  });
