// The caller's own usage and what is left of its limits, from /arting/v1/usage: images
// today against the daily quota, requests this minute, jobs in flight, the models it may
// use, and the last days by model. The counts are the daemon's (UTC days); the view
// refreshes when a job of this page ends and every few seconds, as the quota is shared
// with whatever else uses the same key.

import { call, json, serverNow } from "./api.js";

const DAYS = 7;
const EVERY = 15000;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A daemon time (Unix seconds) as this browser writes dates. */
export const dateText = (t) =>
  new Date(t * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

/** Images today against the daily limit; ``left`` already counts the reserved ones. */
export function imagesText(limit, used, reserved, left) {
  const made = reserved ? `${used} (+${reserved} on the way)` : String(used);
  return limit === null ? `${made} · no limit` : `${made} of ${limit} · ${left} left`;
}

/** Jobs by outcome, in words: "2 done, 1 failed". */
export function jobsText(jobs) {
  const parts = [`${jobs.succeeded} done`];
  if (jobs.failed) parts.push(`${jobs.failed} failed`);
  if (jobs.cancelled) parts.push(`${jobs.cancelled} cancelled`);
  return parts.join(", ");
}

function untilMidnight() {
  const m = Math.ceil((86400 - (serverNow() % 86400)) / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function who(caller, key) {
  if (!key) {
    return caller.id === "local"
      ? "No API keys are set: whoever reaches this daemon is this one local user, with no limits."
      : "The operator's key: no limits apply.";
  }
  const expiry = key.expires_at ? `expires ${dateText(key.expires_at)}` : "does not expire";
  return `Key “${key.name}” (${key.key_prefix}…), ${expiry}.`;
}

/** [label, value text, [value, max] for a meter or null] per limit. */
function facts(entry) {
  const key = entry.key;
  const left = entry.remaining || {};
  const limit = (name) => key?.[name] ?? null;
  const perDay = limit("images_per_day");
  const rpm = limit("requests_per_minute");
  const slots = limit("max_concurrent");
  const used = entry.today.images;
  const reserved = entry.in_flight.images;
  const jobs = entry.in_flight.jobs;
  const rows = [["Images today", imagesText(perDay, used, reserved, left.images_today),
                 perDay === null ? null : [used + reserved, perDay]]];
  if (rpm !== null) {
    const sent = rpm - left.requests_this_minute;
    rows.push(["Requests this minute", `${sent} of ${rpm}`, [sent, rpm]]);
  }
  rows.push(["Jobs in flight", slots === null ? `${jobs} · no limit` : `${jobs} of ${slots}`,
             slots === null ? null : [jobs, slots]]);
  rows.push(["Models", limit("models")?.join(", ") || "all", null]);
  return rows;
}

/** What a person should know now that a limit is used up. */
function warnings(entry) {
  const left = entry.remaining;
  if (!left) return [];
  const out = [];
  if (left.images_today === 0) {
    out.push(`No images left for today: the quota comes back at 00:00 UTC, in ${untilMidnight()}.`);
  }
  if (left.requests_this_minute === 0) {
    out.push("This minute's requests are used up: the next one is accepted within a minute.");
  }
  if (left.jobs_in_flight === 0) out.push("Every job slot is busy: a new job is refused until one ends.");
  return out;
}

function history(entry, withRequests) {
  const head = ["Day (UTC)", "Images", "Jobs", ...(withRequests ? ["Requests"] : [])];
  const rows = [];
  for (const day of entry.days) {
    rows.push(el("tr", { className: "usage-day" },
      el("th", { scope: "row", textContent: day.day }),
      el("td", { textContent: String(day.images) }),
      el("td", { textContent: jobsText(day.jobs) }),
      ...(withRequests ? [el("td", { textContent: String(day.requests) })] : [])));
    for (const [model, use] of Object.entries(day.models).sort()) {
      rows.push(el("tr", { className: "usage-model" },
        el("th", { scope: "row", textContent: model }),
        el("td", { textContent: String(use.images) }),
        el("td", { textContent: plural(use.jobs, "job") }),
        ...(withRequests ? [el("td")] : [])));
    }
  }
  return el("table", { className: "usage-days" },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", textContent: h })))),
    el("tbody", {}, ...rows));
}

export class UsageView {
  constructor() {
    this.section = $("usage");
    this.caller = null;
    setInterval(() => { if (this.caller && !document.hidden) this.load(); }, EVERY);
  }

  /** Show the usage of whoever the daemon says is calling; null hides it. */
  show(caller) {
    if (caller && caller.id === this.caller?.id) return;
    this.caller = caller;
    this.section.hidden = true; // nobody's usage but the caller's, not even for a moment
    if (caller) this.load();
  }

  async load() {
    const caller = this.caller;
    if (!caller) return;
    try {
      const query = new URLSearchParams({ days: String(DAYS), key: caller.id });
      const report = await json(call("GET", `usage?${query}`));
      if (caller === this.caller) this.render(caller, report.data[0]);
    } catch (err) {
      if (caller !== this.caller) return;
      this.say([`Your usage cannot be shown: ${err.message}`], "bad");
    }
  }

  render(caller, entry) {
    $("usage-who").textContent = who(caller, entry.key);
    $("usage-facts").replaceChildren(...facts(entry).map(([label, value, meter]) => {
      const dd = el("dd", {}, el("span", { textContent: value }));
      if (meter) {
        const [now, max] = meter;
        const bar = el("meter", { min: 0, max, value: Math.min(now, max), optimum: 0,
                                  low: max * 0.7, high: max * 0.9 });
        bar.setAttribute("aria-label", `${label}: ${value}`);
        dd.append(bar);
      }
      return el("div", { className: "usage-fact" }, el("dt", { textContent: label }), dd);
    }));
    this.say(warnings(entry), "warn");
    const total = entry.days.reduce((n, d) => n + d.images, 0);
    const jobs = entry.days.reduce((n, d) => n + d.jobs.succeeded + d.jobs.failed + d.jobs.cancelled, 0);
    $("usage-summary").textContent =
      `Last ${DAYS} days: ${plural(total, "image")} from ${plural(jobs, "job")}`;
    $("usage-history").replaceChildren(entry.days.length
      ? history(entry, Boolean(entry.key))
      : el("p", { className: "muted", textContent: `Nothing in the last ${DAYS} days.` }));
    this.section.hidden = false;
  }

  say(lines, level) {
    const note = $("usage-note");
    note.textContent = lines.join(" ");
    note.dataset.level = level;
    note.hidden = lines.length === 0;
  }
}
