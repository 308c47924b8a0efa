// Live updates while a run is not terminal.
//
// First choice: the run's Server-Sent Events (GET /v1/workflows/runs/{id}/events), read with
// fetch() because EventSource cannot send an Authorization header. Each event is only a nudge
// to re-read the run and its steps (the JSON API stays the one source of what is shown).
// Without that endpoint (or when it keeps failing) the page polls the JSON API every second.

import { ApiError, authHeaders } from "./api.js";

const POLL_MS = 1000;
const SAFETY_POLL_MS = 10_000;
const DEBOUNCE_MS = 120;
const STREAM_RETRIES = 3;

const RUN_EVENTS = "/v1/workflows/runs/{run_id}/events";
let openapiPaths = null;

// Whether this deployment serves an events stream: the public OpenAPI document lists every
// route, so one look there spares a request (and a logged 404) per page.
async function hasEventStream(route) {
  if (openapiPaths === null) {
    openapiPaths = fetch("/openapi.json", { credentials: "omit" })
      .then((r) => (r.ok ? r.json() : {}))
      .then((doc) => (doc && doc.paths) || {})
      .catch(() => ({}));
  }
  return Boolean((await openapiPaths)[route]);
}

// `load` wrapped so that one runs at a time: a call made while one runs gets that run's
// promise, and one more load follows it (however many calls came meanwhile).
export function oneAtATime(load) {
  let inFlight = null;
  let again = false;
  return function refresh() {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      try {
        do {
          again = false;
          await load();
        } while (again);
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };
}

export class Live {
  // `path`/`route`: another stream (the organization's run feed); events only nudge `refresh`.
  constructor({ runId, path, route, pollMs, refresh, isDone, onMode, onError }) {
    this.path = path || `/v1/workflows/runs/${encodeURIComponent(runId)}/events`;
    this.route = route || RUN_EVENTS;
    this.pollMs = pollMs || POLL_MS;
    this.refresh = refresh;
    this.isDone = isDone;
    this.onMode = onMode;
    this.onError = onError;
    this.stopped = true;
    this.timer = null;
    this.safety = null;
    this.debounce = null;
    this.controller = null;
    this.lastEventId = null;
    this.current = "";
    this.failed = false;
  }

  async start() {
    if (!this.stopped) return;
    this.stopped = false;
    const streams = typeof ReadableStream !== "undefined" && typeof TextDecoderStream !== "undefined";
    if (streams && (await hasEventStream(this.route))) this.stream(0);
    else this.poll();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.debounce);
    clearInterval(this.safety);
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  // After every refresh: a terminal run needs no more updates.
  check() {
    if (!this.stopped && this.isDone()) {
      this.stop();
      this.onMode("finished");
    }
  }

  mode(name) {
    if (name !== "error") this.current = name;
    this.onMode(name);
  }

  async tick() {
    try {
      await this.refresh();
      if (this.failed) {
        this.failed = false;
        this.onMode(this.current);
      }
      this.check();
      return 0;
    } catch (err) {
      if (err && err.name === "AbortError") return 0;
      this.failed = true;
      const fatal = this.onError(err);
      if (fatal) {
        this.stop();
        return -1;
      }
      return err instanceof ApiError && err.retryAfter ? err.retryAfter * 1000 : 2000;
    }
  }

  poll() {
    if (this.stopped) return;
    this.mode("polling");
    const loop = async () => {
      if (this.stopped) return;
      const wait = await this.tick();
      if (wait >= 0 && !this.stopped) this.timer = setTimeout(loop, Math.max(this.pollMs, wait));
    };
    loop();
  }

  nudge() {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      if (!this.stopped) this.tick();
    }, DEBOUNCE_MS);
  }

  async stream(failures) {
    if (this.stopped) return;
    this.controller = new AbortController();
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    let resp;
    try {
      resp = await fetch(this.path, {
        headers,
        cache: "no-store",
        credentials: "omit",
        signal: this.controller.signal,
      });
    } catch (err) {
      if (this.stopped) return;
      return this.retryStream(failures + 1);
    }
    const type = resp.headers.get("Content-Type") || "";
    if (!resp.ok || !type.startsWith("text/event-stream") || !resp.body) {
      // No such endpoint (404/405), or anything else: the JSON API alone will do.
      if (resp.body) resp.body.cancel().catch(() => {});
      return this.poll();
    }
    this.mode("streaming");
    clearInterval(this.safety);
    this.safety = setInterval(() => this.tick(), SAFETY_POLL_MS);
    this.nudge(); // catch up with anything that happened before the stream opened
    let received = 0;
    try {
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const parts = buffer.split(/\r\n\r\n|\n\n|\r\r/);
        buffer = parts.pop();
        for (const block of parts) {
          let hasData = false;
          for (const line of block.split(/\r\n|\n|\r/)) {
            if (line.startsWith("id:")) this.lastEventId = line.slice(3).trim();
            else if (line.startsWith("data:")) hasData = true;
          }
          if (hasData) {
            received++;
            this.nudge();
          }
        }
      }
    } catch (err) {
      if (this.stopped) return;
    }
    clearInterval(this.safety);
    if (this.stopped) return;
    // The stream ended (the server closes it when the run ends, or a proxy cut it).
    await this.tick();
    if (this.stopped) return;
    this.retryStream(received ? 0 : failures + 1);
  }

  retryStream(failures) {
    if (this.stopped) return;
    if (failures >= STREAM_RETRIES) return this.poll();
    this.mode("reconnecting");
    this.timer = setTimeout(() => this.stream(failures), 1000);
  }
}
