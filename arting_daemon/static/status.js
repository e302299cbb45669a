// The daemon's state at a glance, from /arting/v1/status.
//
// "Upstream reachable" is judged without calling Arting: from the token pool's health
// and the outcome of the most recent jobs. Before any job ran, it honestly says so; the
// "Check Arting" button (check.js) asks Arting itself, by polls that cost nothing.

import { explain, serverNow } from "./api.js";
import { duration, list, number, sentences, t } from "./i18n.js";

/** Job error codes that mean Arting could not be reached or did not answer usefully. */
const UNREACHABLE = new Set(["upstream_error", "upstream_timeout", "timeout", "bad_upstream_response"]);

/** A token's state in words (the daemon's names: ok, cooling, blocked, invalid). */
const TOKEN_STATES = {
  ok: "status.token.ok", cooling: "status.token.cooling", blocked: "status.token.blocked",
  invalid: "status.token.invalid",
};
const tokenState = (state) => (TOKEN_STATES[state] ? t(TOKEN_STATES[state]) : state);

function ago(timestamp) {
  const s = serverNow() - timestamp;
  return s < 10 ? t("time.just_now") : t("time.ago", { duration: duration(s) });
}

/** [level, value, detail] for the upstream: ok, warn, bad or unknown. */
export function upstreamHealth(status) {
  const tokens = status.tokens || [];     // a user key's view has none: its own jobs tell
  const lastError = (state) => tokens.find((tk) => tk.state === state)?.last_error || "";
  const said = (key, state) => (lastError(state) ? t(key, { message: lastError(state) }) : "");
  if (tokens.length && tokens.every((tk) => tk.state === "invalid")) {
    return ["bad", t("status.upstream.token_refused"),
            said("status.detail.token_refused", "invalid") || t("status.detail.token_refused_plain")];
  }
  if (!tokens.some((tk) => tk.state === "ok")) {
    if (tokens.some((tk) => tk.state === "blocked")) {
      return ["bad", t("status.upstream.cloudflare"), said("status.detail.cloudflare", "blocked")];
    }
    const wait = Math.min(...tokens.filter((tk) => tk.state === "cooling").map((tk) => tk.retry_in));
    if (Number.isFinite(wait)) {
      return ["warn", t("status.upstream.rate_limited_for", { duration: duration(wait) }),
              said("status.detail.rate_limited", "cooling")];
    }
  }
  const { succeeded_at: ok, failed_at: bad, failure } = status.last_outcomes;
  if (bad && (!ok || bad > ok) && failure) {
    const detail = t("status.detail.last_failed", { error: explain(failure) });
    if (UNREACHABLE.has(failure.code)) return ["bad", t("status.upstream.unreachable"), detail];
    return ["warn", t("status.upstream.last_failed"), detail];
  }
  if (ok) return ["ok", t("status.upstream.reachable", { ago: ago(ok) }), ""];
  return ["unknown", t("status.upstream.not_tried"), t("status.detail.not_tried")];
}

/** [level, text] for the Tokens chip: their health, and the balance Arting reports
 *  (remain_balance) where it has reported one; a balance at zero is a warning. */
function tokenSummary(tokens) {
  const counts = {};
  for (const tk of tokens) counts[tk.state] = (counts[tk.state] || 0) + 1;
  let text = list(Object.entries(counts).map(([state, n]) =>
    t("status.tokens.count", { n: number(n), state: tokenState(state) })));
  let level = counts.ok === tokens.length ? "ok" : counts.ok ? "warn" : "bad";
  const known = tokens.filter((tk) => tk.balance !== null && tk.balance !== undefined);
  if (known.length) {
    text = t("status.tokens.with_balance", { tokens: text, balance: known.map((tk) => number(tk.balance)).join(" / ") });
    if (level === "ok" && known.some((tk) => tk.balance === 0)) level = "warn";
  }
  const guest = tokens.length === 1 && tokens[0].anonymous;
  return [level, guest ? t("status.tokens.guest", { tokens: text }) : text];
}

function tokenLine(tk) {
  const known = tk.balance !== null && tk.balance !== undefined;
  const line = t(known ? "status.token.line_balance" : "status.token.line",
                 { label: tk.label, state: tokenState(tk.state), balance: known ? number(tk.balance) : "" });
  return tk.last_error ? t("status.token.line_error", { line, error: tk.last_error }) : line;
}

/** A provider's health (from traffic, as the daemon tells it): [level, words key]. */
const PROVIDER_STATES = {
  ok: ["ok", "status.provider.ok"], unknown: ["unknown", "status.upstream.not_tried"],
  refused: ["bad", "status.provider.refused"], unreachable: ["bad", "status.upstream.unreachable"],
  blocked: ["bad", "status.upstream.cloudflare"], "rate-limited": ["warn", "status.provider.rate_limited"],
  failing: ["warn", "status.provider.failing"],
};

function providerChip(p) {
  const [level, key] = PROVIDER_STATES[p.state] || ["unknown", null];
  const words = key ? t(key) : p.state;
  const chip = document.createElement("li");
  chip.className = "chip";
  chip.dataset.provider = p.name;
  const label = document.createElement("span");
  label.className = "chip-label";
  label.setAttribute("translate", "no");
  label.textContent = p.label;
  const value = document.createElement("span");
  value.className = "chip-value";
  chip.append(label, " ", value);
  const where = p.base_url ? t("status.provider.kind_at", { kind: p.kind, url: p.base_url })
    : t("status.provider.kind", { kind: p.kind });
  const state = p.in_flight ? t("status.provider.running", { state: words, n: number(p.in_flight) }) : words;
  const known = p.balance !== null && p.balance !== undefined;    // Stability AI's credits
  show(chip, level, known ? t("status.provider.balance", { state, balance: number(p.balance) }) : state, [
    t("status.provider.models", { where, n: number(p.models) }),
    p.credentials ? t("status.provider.credentials", { credentials: p.credentials })
      : p.tokens?.length ? t("status.provider.tokens", { tokens: tokenSummary(p.tokens)[1] }) : "",
    p.last_error && level !== "ok" ? t("status.provider.last_error", { error: p.last_error }) : "",
  ].filter(Boolean).join("\n"));
  return [chip, level];
}

function show(chip, level, value, title = "") {
  chip.dataset.level = level;
  chip.querySelector(".chip-value").textContent = value;
  chip.title = title;
}

function modeOf(sandbox, upstream, providers = 1) {
  if (sandbox) return ["info", t(providers > 1 ? "status.mode.sandbox_all" : "status.mode.sandbox")];
  if (!upstream) return ["ok", t("status.mode.live")];
  let host = upstream;
  try { host = new URL(upstream).host; } catch { /* not a URL: show it as it is */ }
  return ["ok", t("status.mode.live_at", { host })];
}

export class StatusBar {
  constructor() {
    const $ = (id) => document.getElementById(id);
    Object.assign(this, { upstream: $("st-upstream"), mode: $("st-mode"), tokens: $("st-tokens"),
                          queue: $("st-queue"), providers: $("st-providers"),
                          version: $("version"), detail: $("status-detail") });
  }

  render(status) {
    this.version.textContent = t("status.version", { version: status.version });
    const [level, value, detail] = upstreamHealth(status);
    show(this.upstream, level, value, detail);
    show(this.mode, ...modeOf(status.sandbox, status.upstream, (status.providers || []).length),
         status.upstream);
    const tokens = status.tokens || [];             // none: no provider named arting, or a user key
    this.tokens.hidden = !tokens.length;
    const [tokenLevel, tokenText] = tokenSummary(tokens);
    show(this.tokens, tokenLevel, tokenText, tokens.map(tokenLine).join("\n"));
    const q = status.queue;
    const queue = { running: number(q.active), waiting: number(q.queued), position: number(q.position || 0) };
    if ("position" in q) {                          // a user key's: its own jobs only
      show(this.queue, "ok", t(q.position ? "status.queue.own_position" : "status.queue.own", queue));
    } else {
      const full = q.queued >= q.max_queued;
      show(this.queue, full ? "bad" : "ok", t(full ? "status.queue.full" : "status.queue.counts", queue));
    }
    const troubled = this.showProviders(status.providers || []);
    if (level === "ok" || level === "unknown") this.say(troubled, troubled.length ? "warn" : level);
    else this.say(detail, level);
  }

  /** A chip per provider when there are several; returns what is wrong with them. */
  showProviders(providers) {
    const chips = providers.length > 1 ? providers.map(providerChip) : [];
    this.providers.querySelector("ul").replaceChildren(...chips.map(([chip]) => chip));
    this.providers.hidden = !chips.length;
    return providers.filter((p, i) => chips[i] && chips[i][1] === "bad" && p.last_error)
      .map((p) => t("status.provider.trouble", { provider: p.label, error: p.last_error }));
  }

  /** /status refused or unreachable: say why; show what the public health check tells. */
  unavailable(err, health) {
    const value = t(err.status === 401 ? "status.needs_key" : "status.unknown");
    for (const chip of [this.upstream, this.tokens, this.queue]) show(chip, "unknown", value);
    if (health) {
      this.version.textContent = t("status.version", { version: health.version });
      show(this.mode, ...modeOf(health.sandbox, null));
    } else {
      show(this.mode, "unknown", t("status.unknown"));
    }
    this.say(err.message, "bad");
  }

  /** The words under the chips: a sentence, or several (each its own text node). */
  say(text, level) {
    const parts = Array.isArray(text) ? text : [text].filter(Boolean);
    this.detail.replaceChildren(...sentences(parts));
    this.detail.dataset.level = level;
    this.detail.hidden = !parts.length;
  }
}
