// The live tail: an EventSource on GET /v1/tail (same origin, so the
// session cookie goes with it: EventSource cannot send headers). It
// reconnects by itself with Last-Event-ID; the API answers `event: gap`
// when entries after that position have left the stream.

import { query } from "./api.js";

export class Tail {
  /**
   * @param services the search's services (none: all)
   * @param handlers {onEvent(event) -> counted?, onRate(perSecond),
   *   onGap(fromIso), onState(text), onResume()}
   */
  constructor(services, handlers) {
    this.handlers = handlers;
    this.paused = false;
    this.stamps = [];
    this.source = new EventSource(`/v1/tail${query(services.map((s) => ["service", s]))}`);
    handlers.onState("connecting…");
    this.source.addEventListener("open", () => handlers.onState(this.paused ? "paused" : "live"));
    this.source.addEventListener("event", (m) => {
      let event;
      try {
        event = JSON.parse(m.data);
      } catch {
        return;
      }
      if (handlers.onEvent(event)) this.stamps.push(performance.now());
    });
    this.source.addEventListener("gap", (m) => {
      let from = null;
      try {
        const streams = JSON.parse(m.data).streams || [];
        from = streams.map((s) => s.missing_from).filter(Boolean).sort()[0] || null;
      } catch {
        from = null;
      }
      handlers.onGap(from);
    });
    this.source.addEventListener("error", () => {
      // CLOSED: the server refused (a lost session, too many tails);
      // otherwise the browser is reconnecting.
      handlers.onState(this.source.readyState === EventSource.CLOSED ? "stopped: the tail was refused (sign in again, or too many tails are open)" : "reconnecting…");
    });
    this.timer = setInterval(() => this.rate(), 1000);
    this.rate();
  }

  /** Events per second over the last five seconds. */
  rate() {
    const now = performance.now();
    while (this.stamps.length && this.stamps[0] < now - 5000) this.stamps.shift();
    this.handlers.onRate(this.stamps.length / 5);
  }

  pause() {
    this.paused = true;
    this.handlers.onState("paused");
  }

  resume() {
    this.paused = false;
    this.handlers.onResume();
    this.handlers.onState("live");
  }

  stop() {
    clearInterval(this.timer);
    this.source.close();
  }
}
