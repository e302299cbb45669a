// The caller's own usage and what is left of its limits, from /arting/v1/usage: images
// today against the daily quota, requests this minute, jobs in flight, the models it may
// use, and the last days by model. The counts are the daemon's (UTC days); the view
// refreshes when a job of this page ends and every few seconds, as the quota is shared
// with whatever else uses the same key.

import { call, json, serverNow } from "./api.js";
import { dateTime, minutes, nodes, number, sentences, t, timeElement, verbatim } from "./i18n.js";

const DAYS = 7;
const EVERY = 15000;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

/** A daemon time (Unix seconds) as a <time> in this language's words. */
export const when = (seconds) => timeElement(seconds, dateTime(seconds));

/** Images today against the daily limit; ``left`` already counts the reserved ones. */
export function imagesText(limit, used, reserved, left) {
  const made = reserved ? t("usage.images.reserved", { used: number(used), reserved: number(reserved) })
    : number(used);
  return limit === null ? t("usage.images.no_limit", { made })
    : t("usage.images.of", { made, limit: number(limit), left: number(left) });
}

/** Jobs by outcome, in words: "2 done, 1 failed". */
export function jobsText(jobs) {
  const parts = [t("usage.jobs.done", { n: number(jobs.succeeded) })];
  if (jobs.failed) parts.push(t("usage.jobs.failed", { n: number(jobs.failed) }));
  if (jobs.cancelled) parts.push(t("usage.jobs.cancelled", { n: number(jobs.cancelled) }));
  return parts.join(t("usage.jobs.separator"));
}

const untilMidnight = () => minutes(86400 - (serverNow() % 86400));

function who(caller, key) {
  if (!key) return [t(caller.id === "local" ? "usage.who.local" : "usage.who.admin")];
  return nodes(key.expires_at ? "usage.who.key_expires" : "usage.who.key", {
    name: verbatim(key.name), prefix: verbatim(key.key_prefix), date: key.expires_at ? when(key.expires_at) : "",
  });
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
  const rows = [[t("usage.images_today"), imagesText(perDay, used, reserved, left.images_today),
                 perDay === null ? null : [used + reserved, perDay]]];
  if (rpm !== null) {
    const sent = rpm - left.requests_this_minute;
    rows.push([t("usage.requests_minute"), t("usage.of", { n: number(sent), limit: number(rpm) }), [sent, rpm]]);
  }
  rows.push([t("usage.jobs_in_flight"), slots === null ? t("usage.no_limit", { n: number(jobs) })
    : t("usage.of", { n: number(jobs), limit: number(slots) }), slots === null ? null : [jobs, slots]]);
  rows.push([t("usage.models"), limit("models") ? verbatim(limit("models").join(", ")) : t("usage.models.all"), null]);
  return rows;
}

/** What a person should know now that a limit is used up. */
function warnings(entry) {
  const left = entry.remaining;
  if (!left) return [];
  const out = [];
  if (left.images_today === 0) out.push(t("usage.warn.images", { wait: untilMidnight() }));
  if (left.requests_this_minute === 0) out.push(t("usage.warn.requests"));
  if (left.jobs_in_flight === 0) out.push(t("usage.warn.jobs"));
  return out;
}

function history(entry, withRequests) {
  const head = [t("usage.day"), t("usage.images"), t("usage.jobs"), ...(withRequests ? [t("usage.requests")] : [])];
  const rows = [];
  for (const day of entry.days) {
    rows.push(el("tr", { className: "usage-day" },
      el("th", { scope: "row" }, timeElement(Date.parse(`${day.day}T00:00:00Z`) / 1000, day.day)),
      el("td", { textContent: number(day.images) }),
      el("td", { textContent: jobsText(day.jobs) }),
      ...(withRequests ? [el("td", { textContent: number(day.requests) })] : [])));
    for (const [model, use] of Object.entries(day.models).sort()) {
      rows.push(el("tr", { className: "usage-model" },
        el("th", { scope: "row" }, verbatim(model)),
        el("td", { textContent: number(use.images) }),
        el("td", { textContent: t("usage.job_count", { n: use.jobs, count: number(use.jobs) }) }),
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
      this.say([t("usage.failed", { error: err.message })], "bad");
    }
  }

  render(caller, entry) {
    $("usage-who").replaceChildren(...who(caller, entry.key));
    $("usage-facts").replaceChildren(...facts(entry).map(([label, value, meter]) => {
      const dd = el("dd", {}, value instanceof Node ? value : el("span", { textContent: value }));
      if (meter) {
        const [now, max] = meter;
        const bar = el("meter", { min: 0, max, value: Math.min(now, max), optimum: 0,
                                  low: max * 0.7, high: max * 0.9 });
        bar.setAttribute("aria-label", t("usage.meter", { label, value }));
        dd.append(bar);
      }
      return el("div", { className: "usage-fact" }, el("dt", { textContent: label }), dd);
    }));
    this.say(warnings(entry), "warn");
    const total = entry.days.reduce((n, d) => n + d.images, 0);
    const jobs = entry.days.reduce((n, d) => n + d.jobs.succeeded + d.jobs.failed + d.jobs.cancelled, 0);
    $("usage-summary").textContent = t("usage.summary", {
      days: number(DAYS),
      images: t("usage.image_count", { n: total, count: number(total) }),
      jobs: t("usage.job_count", { n: jobs, count: number(jobs) }),
    });
    $("usage-history").replaceChildren(entry.days.length
      ? history(entry, Boolean(entry.key))
      : el("p", { className: "muted", textContent: t("usage.nothing", { days: number(DAYS) }) }));
    this.section.hidden = false;
  }

  say(lines, level) {
    const note = $("usage-note");
    note.replaceChildren(...sentences(lines));
    note.dataset.level = level;
    note.hidden = lines.length === 0;
  }
}
