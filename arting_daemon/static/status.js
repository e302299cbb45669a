// The daemon's state at a glance, from /arting/v1/status.
//
// "Upstream reachable" is judged without calling Arting: from the token pool's health
// and the outcome of the most recent jobs. Before any job ran, it honestly says so; the
// "Check Arting" button (check.js) asks Arting itself, by polls that cost nothing.

import { serverNow } from "./api.js";
import { seconds } from "./jobs.js";

/** Job error codes that mean Arting could not be reached or did not answer usefully. */
const UNREACHABLE = new Set(["upstream_error", "upstream_timeout", "timeout", "bad_upstream_response"]);

function ago(timestamp) {
  const s = serverNow() - timestamp;
  return s < 10 ? "just now" : `${seconds(s)} ago`;
}

/** [level, value, detail] for the upstream: ok, warn, bad or unknown. */
export function upstreamHealth(status) {
  const tokens = status.tokens;
  const lastError = (state) => tokens.find((t) => t.state === state)?.last_error || "";
  if (tokens.length && tokens.every((t) => t.state === "invalid")) {
    return ["bad", "token refused", lastError("invalid") ||
      "Arting refused the token: copy a fresh one from a logged-in browser (see Troubleshooting)."];
  }
  if (!tokens.some((t) => t.state === "ok")) {
    if (tokens.some((t) => t.state === "blocked")) return ["bad", "Cloudflare is in the way", lastError("blocked")];
    const wait = Math.min(...tokens.filter((t) => t.state === "cooling").map((t) => t.retry_in));
    if (Number.isFinite(wait)) return ["warn", `rate-limited for ${seconds(wait)}`, lastError("cooling")];
  }
  const { succeeded_at: ok, failed_at: bad, failure } = status.last_outcomes;
  if (bad && (!ok || bad > ok) && failure) {
    if (UNREACHABLE.has(failure.code)) return ["bad", "not reachable", `The last job failed: ${failure.message}`];
    return ["warn", "answering, last job failed", `The last job failed: ${failure.message}`];
  }
  if (ok) return ["ok", `reachable, last image ${ago(ok)}`, ""];
  return ["unknown", "not tried yet",
          "No job has run yet: the daemon does not call Arting on its own. Check Arting asks it now, at no cost."];
}

/** [level, text] for the Tokens chip: their health, and the balance Arting reports
 *  (remain_balance) where it has reported one; a balance at zero is a warning. */
function tokenSummary(tokens) {
  const counts = {};
  for (const t of tokens) counts[t.state] = (counts[t.state] || 0) + 1;
  let text = Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(", ");
  let level = counts.ok === tokens.length ? "ok" : counts.ok ? "warn" : "bad";
  const who = tokens.length === 1 && tokens[0].anonymous ? "guest identity: " : "";
  const known = tokens.filter((t) => t.balance !== null && t.balance !== undefined);
  if (known.length) {
    text += `, balance ${known.map((t) => t.balance).join(" / ")}`;
    if (level === "ok" && known.some((t) => t.balance === 0)) level = "warn";
  }
  return [level, who + text];
}

function tokenLine(t) {
  const balance = t.balance === null || t.balance === undefined ? "" : `, balance ${t.balance}`;
  return `${t.label}: ${t.state}${balance}${t.last_error ? ` (${t.last_error})` : ""}`;
}

/** A provider's health (from traffic, as the daemon tells it): [level, words]. */
const PROVIDER_STATES = {
  ok: ["ok", "ok"], unknown: ["unknown", "not tried yet"],
  refused: ["bad", "credentials refused"], unreachable: ["bad", "not reachable"],
  blocked: ["bad", "Cloudflare is in the way"], "rate-limited": ["warn", "rate-limited"],
  failing: ["warn", "failing"],
};

function providerChip(p) {
  const [level, words] = PROVIDER_STATES[p.state] || ["unknown", p.state];
  const chip = document.createElement("li");
  chip.className = "chip";
  chip.dataset.provider = p.name;
  const label = document.createElement("span");
  label.className = "chip-label";
  label.textContent = p.label;
  const value = document.createElement("span");
  value.className = "chip-value";
  chip.append(label, " ", value);
  const tokens = p.tokens?.length ? `tokens: ${tokenSummary(p.tokens)[1]}` : "";
  show(chip, level, p.in_flight ? `${words}, ${p.in_flight} running` : words, [
    `${p.kind}${p.base_url ? ` at ${p.base_url}` : ""}, ${p.models} models`,
    p.credentials ? `credentials: ${p.credentials}` : tokens,
    p.last_error && level !== "ok" ? `last error: ${p.last_error}` : "",
  ].filter(Boolean).join("\n"));
  return [chip, level];
}

function show(chip, level, value, title = "") {
  chip.dataset.level = level;
  chip.querySelector(".chip-value").textContent = value;
  chip.title = title;
}

function modeOf(sandbox, upstream) {
  if (sandbox) return ["info", "sandbox (Arting emulator)"];
  if (!upstream) return ["ok", "live"];
  let host = upstream;
  try { host = new URL(upstream).host; } catch { /* not a URL: show it as it is */ }
  return ["ok", `live: ${host}`];
}

export class StatusBar {
  constructor() {
    const $ = (id) => document.getElementById(id);
    Object.assign(this, { upstream: $("st-upstream"), mode: $("st-mode"), tokens: $("st-tokens"),
                          queue: $("st-queue"), providers: $("st-providers"),
                          version: $("version"), detail: $("status-detail") });
  }

  render(status) {
    this.version.textContent = `version ${status.version}`;
    const [level, value, detail] = upstreamHealth(status);
    show(this.upstream, level, value, detail);
    show(this.mode, ...modeOf(status.sandbox, status.upstream), status.upstream);
    this.tokens.hidden = !status.tokens.length;     // no provider named arting
    const [tokenLevel, tokenText] = tokenSummary(status.tokens);
    show(this.tokens, tokenLevel, tokenText, status.tokens.map(tokenLine).join("\n"));
    const q = status.queue;
    const full = q.queued >= q.max_queued;
    show(this.queue, full ? "bad" : "ok", `${q.active} running, ${q.queued} waiting${full ? " (full)" : ""}`);
    const troubled = this.showProviders(status.providers || []);
    if (level === "ok" || level === "unknown") this.say(troubled.join(" "), troubled.length ? "warn" : level);
    else this.say(detail, level);
  }

  /** A chip per provider when there are several; returns what is wrong with them. */
  showProviders(providers) {
    const list = this.providers.querySelector("ul");
    const chips = providers.length > 1 ? providers.map(providerChip) : [];
    list.replaceChildren(...chips.map(([chip]) => chip));
    this.providers.hidden = !chips.length;
    return providers.filter((p, i) => chips[i] && chips[i][1] === "bad" && p.last_error)
      .map((p) => `${p.label}: ${p.last_error}`);
  }

  /** /status refused or unreachable: say why; show what the public health check tells. */
  unavailable(err, health) {
    const value = err.status === 401 ? "needs the API key" : "unknown";
    for (const chip of [this.upstream, this.tokens, this.queue]) show(chip, "unknown", value);
    if (health) {
      this.version.textContent = `version ${health.version}`;
      show(this.mode, ...modeOf(health.sandbox, null));
    } else {
      show(this.mode, "unknown", "unknown");
    }
    this.say(err.message, "bad");
  }

  say(text, level) {
    this.detail.textContent = text;
    this.detail.dataset.level = level;
    this.detail.hidden = !text;
  }
}
