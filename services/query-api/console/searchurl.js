// A search and its URL: the console's only state besides the session.
// The parameter names are the API's own (plus `range` for the quick
// picks), so the query string of a search page is nearly the API call.

import { query } from "./api.js";

/** The quick ranges, in milliseconds. */
export const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };

/** The search a location describes. */
export function readSearch(loc) {
  const p = new URLSearchParams(loc.search);
  const services = p.getAll("service").flatMap((s) => s.split(",")).filter(Boolean);
  const from = p.get("from");
  const to = p.get("to");
  const range = from || to ? null : (RANGES[p.get("range")] ? p.get("range") : "1h");
  const metadata = [];
  for (const [k, v] of p) if (k.startsWith("metadata.")) metadata.push([k.slice("metadata.".length), v]);
  return { services: [...new Set(services)].sort(), range, from, to, q: p.get("q") || "", order: p.get("order") === "asc" ? "asc" : "desc", metadata };
}

/** The URL of a search. */
export function searchUrl(s) {
  const pairs = s.services.map((x) => ["service", x]);
  if (s.range) pairs.push(["range", s.range]);
  else {
    pairs.push(["from", s.from]);
    pairs.push(["to", s.to]);
  }
  if (s.q) pairs.push(["q", s.q]);
  for (const [k, v] of s.metadata) pairs.push([`metadata.${k}`, v]);
  if (s.order === "asc") pairs.push(["order", "asc"]);
  return `/${query(pairs)}`;
}
