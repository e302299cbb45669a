// The daemon's native job API, as the page uses it: the key, requests, errors in words,
// and job events: over one WebSocket for the whole page (the key goes in its first
// message), else read with fetch() from each job's event stream (EventSource cannot
// send an Authorization header, and the key must never travel in a URL).

import { duration, minutes, t } from "./i18n.js";

const KEY_NAME = "arting-2api.api-key";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

/** The API key, kept in this browser's localStorage (absent when storage is off). */
export const apiKey = {
  get() {
    try { return localStorage.getItem(KEY_NAME) || ""; } catch { return ""; }
  },
  set(value) {
    try { localStorage.setItem(KEY_NAME, value); return true; } catch { return false; }
  },
  clear() {
    try { localStorage.removeItem(KEY_NAME); } catch { /* storage off: nothing kept */ }
  },
};

/** The daemon's root, as this page reached it (works behind a path prefix too). */
export const root = new URL(".", document.baseURI);

export const isTerminal = (job) => TERMINAL.has(job.state);

/** What each error code means, in the reader's words (the daemon's own message stays in
 *  English: clients and logs key on it; the page shows it beside the explanation). */
const EXPLAINED = {
  invalid_request: "error.invalid_request", destination_refused: "error.destination_refused",
  feature_disabled: "error.feature_disabled", invalid_api_key: "error.invalid_api_key",
  forbidden: "error.forbidden", model_not_allowed: "error.model_not_allowed",
  not_found: "error.not_found", model_not_found: "error.model_not_found",
  payload_too_large: "error.payload_too_large", rate_limit_exceeded: "error.rate_limit_exceeded",
  quota_exceeded: "error.quota_exceeded", unavailable: "error.unavailable",
  cancelled: "error.cancelled", timeout: "error.timeout", upstream_error: "error.upstream_error",
  upstream_timeout: "error.upstream_timeout", upstream_rejected: "error.upstream_rejected",
  content_refused: "error.content_refused", upstream_invalid_request: "error.upstream_invalid_request",
  upstream_auth: "error.upstream_auth", upstream_rate_limited: "error.upstream_rate_limited",
  generation_failed: "error.generation_failed", cloudflare_blocked: "error.cloudflare_blocked",
  bad_upstream_response: "error.bad_upstream_response", internal_error: "error.internal_error",
};

/** The daemon's error (``{code, message}``, a job's or an answer's) as the page shows it:
 *  its explanation in the reader's language with the daemon's words beside it. */
export function explain(error = {}, status = 0) {
  const key = EXPLAINED[error.code] || (status >= 500 ? "error.server" : "error.other");
  const explanation = t(key);
  return error.message ? t("error.shown", { explanation, message: error.message }) : explanation;
}

/** A failure, with a message meant for a person. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, param = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

let clockOffset = 0;

/** The daemon's clock, in seconds (job times are the daemon's). */
export function serverNow() {
  return Date.now() / 1000 + clockOffset;
}

function noteClock(resp) {
  const date = Date.parse(resp.headers.get("Date") || "");
  if (Number.isFinite(date)) {
    const offset = date / 1000 - Date.now() / 1000;
    // The header has one-second resolution: only a real difference counts.
    clockOffset = Math.abs(offset) > 2 ? offset : 0;
  }
}

const unreachable = (detail) => new ApiError(
  t("error.unreachable", { host: root.host, detail }), { code: "network" });

/** What to do about a missing or refused key, in words (``said``: the daemon's). */
function keyRefused(said = "", opts = {}) {
  // A revoked or expired key: the daemon's own words say which, and since when.
  const known = /revoked|expired/i.test(said);
  const message = !apiKey.get() ? t("error.key_needed")
    : known ? explain({ code: "invalid_api_key", message: said }) : t("error.key_unknown");
  return new ApiError(message, { ...opts, status: 401, code: "invalid_api_key" });
}

/** Turn a refused answer into an ApiError whose message says what to do. */
async function refusal(resp) {
  let error = {};
  try { error = (await resp.json()).error || {}; } catch { /* not JSON: say it plainly */ }
  const opts = { status: resp.status, code: error.code || null, param: error.param || null };
  if (resp.status === 401) return keyRefused(error.message || "", opts);
  let message = error.message ? explain(error, resp.status)
    : t("error.status", { status: resp.status, text: resp.statusText });
  const retry = Number(resp.headers.get("Retry-After"));
  if (resp.status === 429 && retry > 0) message += t("error.retry_after", { wait: waitText(retry) });
  return new ApiError(message, opts);
}

/** A Retry-After in words: seconds, minutes, or hours (a daily quota waits for midnight). */
const waitText = (s) => (s < 90 ? duration(Math.ceil(s)) : minutes(s));

export async function call(method, path, { body, headers = {}, signal } = {}) {
  const sent = new Headers(headers);
  const key = apiKey.get();
  if (key) sent.set("Authorization", `Bearer ${key}`);
  if (body !== undefined) sent.set("Content-Type", "application/json");
  let resp;
  try {
    resp = await fetch(new URL(`arting/v1/${path}`, root), {
      method, headers: sent, signal, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw unreachable(err.message);
  }
  noteClock(resp);
  if (!resp.ok) throw await refusal(resp);
  return resp;
}

export const json = async (promise) => (await promise).json();

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const api = {
  health: () => json(fetch(new URL("healthz", root), { cache: "no-store" })),
  catalog: () => json(call("GET", "catalog")),
  status: () => json(call("GET", "status")),
  check: () => json(call("POST", "admin/check")),
  lastCheck: () => json(call("GET", "admin/check")),
  job: (id) => json(call("GET", `jobs/${encodeURIComponent(id)}`)),
  cancel: (id) => json(call("DELETE", `jobs/${encodeURIComponent(id)}`)),

  list({ limit = 12, before = null, state = null } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== null) query.set("before", String(before));
    if (state) query.set("state", state);
    return json(call("GET", `jobs?${query}`));
  },

  /** Submit a job. A lost answer is retried once with the same Idempotency-Key,
   *  so the retry can never start a second generation. */
  async submit(body) {
    const headers = { "Idempotency-Key": randomKey(), "X-Arting-Client": "web" };
    try {
      return await json(call("POST", "jobs", { body, headers }));
    } catch (err) {
      if (err.code !== "network") throw err;
      await sleep(1000);
      return json(call("POST", "jobs", { body, headers }));
    }
  },
};

export const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** Yield the job from its server-sent events until the stream ends. */
async function* events(id, signal) {
  const resp = await call("GET", `jobs/${encodeURIComponent(id)}/events`,
                          { headers: { Accept: "text/event-stream" }, signal });
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const event = parseEvent(block);
        if (event.type === "job" && event.data) yield JSON.parse(event.data);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseEvent(block) {
  const event = { type: "message", data: "" };
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") event.data += (event.data ? "\n" : "") + value;
  }
  return event;
}

/** The page's one WebSocket to the daemon (GET arting/v1/ws), opened when first needed:
 *  jobs are subscribed to on it and their events handed to whoever follows them. */
class LiveChannel {
  constructor() {
    this.socket = null;       // a promise of the open, authorized socket
    this.watchers = new Map(); // job id → { onJob, done, failed }
    this.usable = typeof WebSocket === "function";
  }

  connect() {
    this.socket ??= new Promise((resolve, reject) => {
      const url = new URL("arting/v1/ws", root);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(url);
      let ready = false;
      let refusal = "";         // the daemon's words for a refused key
      ws.onopen = () => {
        const key = apiKey.get();
        if (key) ws.send(JSON.stringify({ auth: key }));
      };
      ws.onmessage = (e) => {
        const message = JSON.parse(e.data);
        if (message.event === "ready") {
          ready = true;
          resolve(ws);
        } else if (message.event === "error" && (!ready || (!message.id && !message.ref))) {
          // refused at the start, or revoked or expired since: the close (4401) follows
          refusal = message.error?.message || "";
          if (!ready) reject(keyRefused(refusal));
        } else {
          this.dispatch(message);
        }
      };
      ws.onclose = (e) => {
        this.socket = null;
        if (!ready) {
          // A daemon without it: its event streams serve instead, from now on.
          if (e.code !== 4401) this.usable = false;
          reject(e.code === 4401 ? keyRefused(e.reason) : unreachable(t("error.no_websocket")));
        }
        const lost = e.code === 4401 ? keyRefused(refusal || e.reason)
          : unreachable(t("error.connection_closed"));
        for (const watcher of this.watchers.values()) watcher.failed(lost);
        this.watchers.clear();
      };
    });
    return this.socket;
  }

  dispatch(message) {
    const id = message.event === "job" ? message.job.id : message.id;
    const watcher = this.watchers.get(id);
    if (!watcher) return;
    if (message.event === "job") {
      watcher.onJob(message.job);
      if (isTerminal(message.job)) watcher.done(message.job);
    } else if (message.event === "error") {
      const error = message.error || {};
      watcher.failed(new ApiError(error.message ? explain(error) : t("error.not_followed"),
                                  { code: error.code || null }));
    }
  }

  /** Follow one job to its end over the socket; resolves with its last state. */
  async follow(id, onJob, signal) {
    const ws = await this.connect();
    let last = null;
    return new Promise((resolve, reject) => {
      const end = () => {
        this.watchers.delete(id);
        signal.removeEventListener("abort", abort);
      };
      const abort = () => {
        end();
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ unsubscribe: [id] }));
        resolve(last);
      };
      this.watchers.set(id, {
        onJob: (job) => { last = job; onJob(job); },
        done: (job) => { end(); resolve(job); },
        failed: (err) => { end(); reject(err); },
      });
      signal.addEventListener("abort", abort, { once: true });
      ws.send(JSON.stringify({ subscribe: [id] }));
    });
  }
}

const live = new LiveChannel();

/** Follow a job to its end, calling onJob on every event: over the page's WebSocket,
 *  else (no WebSocket, or it closed) over the job's event stream. A dropped stream is
 *  reopened (the daemon keeps the job), after telling onLost why; refusals (wrong
 *  key, unknown job) end it. */
export async function follow(id, onJob, onLost, signal) {
  if (live.usable && !signal.aborted) {
    try {
      return await live.follow(id, onJob, signal);
    } catch (err) {
      if (err.code !== "network") throw err;
      if (live.usable) onLost(err);
    }
  }
  let last = null;
  while (!signal.aborted) {
    try {
      for await (const job of events(id, signal)) {
        last = job;
        onJob(job);
      }
      if (last && isTerminal(last)) return last;
    } catch (err) {
      if (err.name === "AbortError") return last;
      if (err.code !== "network" && !(err instanceof TypeError)) throw err;
      onLost(err.code === "network" ? err : unreachable(err.message));
    }
    await sleep(1000, signal);
  }
  return last;
}
