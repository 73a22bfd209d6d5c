// The one module that talks to the query-api. Every request is same-origin
// and authenticated by the session cookie (HttpOnly: this code never sees
// it); the API key itself is sent once, to POST /v1/session, and forgotten.
// Errors come back in the API's shape {"error":{"code","message","field"}}
// and are thrown as ApiError, whose text names the field at fault.

/** Sent with every request: a cross-site form cannot send it, so the API
 * accepts state changes made with the cookie only when it is present. */
const CSRF = { "X-Requested-With": "eventline-console" };

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }

  /** The message a person reads: the API's words, and the field they concern. */
  get text() {
    return this.field ? `${this.field}: ${this.message}` : this.message;
  }
}

let onSignedOut = () => {};

/** Called when the API says the session is gone (401), to show sign-in. */
export function whenSignedOut(fn) {
  onSignedOut = fn;
}

/** A JSON request; resolves to the parsed body (null for 204). */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const h = { Accept: "application/json", ...CSRF, ...headers };
  const init = { method, headers: h, credentials: "same-origin", signal };
  if (body !== undefined) {
    h["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "the query-api cannot be reached; check the connection and retry");
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || `http_${res.status}`, err.message || `the query-api answered ${res.status}`, err.field);
    // A sign-in attempt's 401 is the form's business, not a lost session.
    if (res.status === 401 && path !== "/v1/session") onSignedOut(e);
    throw e;
  }
  return data;
}

/** Signs in with `key` (sent in a header, never in a URL); the session. */
export function signIn(key) {
  return api("/v1/session", { method: "POST", headers: { Authorization: `Bearer ${key}` } });
}

export function session() {
  return api("/v1/session");
}

export function signOut() {
  return api("/v1/session", { method: "DELETE" });
}

/** A query string from [name, value] pairs (repeated names kept). */
export function query(pairs) {
  const p = new URLSearchParams();
  for (const [k, v] of pairs) if (v !== undefined && v !== null && v !== "") p.append(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}
