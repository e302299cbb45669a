// The no-cost check of Arting, from the status area: the daemon runs `arting-daemon check`'s
// free part (reach, Cloudflare, every token, the answers' shape: polls only, never an image)
// and the page lists its findings, with the arting.toml lines they call for. It is the
// operator's: offered to an admin key (or an open daemon) only.

import { api } from "./api.js";
import { nodes, t, verbatim } from "./i18n.js";

const WORDS = { ok: "check.level.ok", info: "check.level.info", warn: "check.level.warn", fail: "check.level.fail" };
const LEVELS = { ok: "ok", info: "info", warn: "warn", fail: "bad" };

const code = (text) => verbatim(text, "code");

/** A finding's words (the daemon's, kept in English): `quoted` names (settings, commands)
 *  as code. */
function words(message) {
  return message.split(/`([^`]+)`/).map((part, i) => (i % 2 ? code(part) : verbatim(part)));
}

function item(finding) {
  const li = document.createElement("li");
  li.dataset.level = LEVELS[finding.level] || "info";
  const label = document.createElement("strong");
  const level = WORDS[finding.level] ? t(WORDS[finding.level]) : finding.level;
  label.append(...nodes("check.finding", { level, topic: verbatim(finding.topic) }));
  li.append(label, ...words(finding.message));
  for (const line of finding.lines) li.append(" ", code(line));
  return li;
}

export class CheckPanel {
  constructor() {
    const $ = (id) => document.getElementById(id);
    Object.assign(this, { row: $("check-row"), button: $("check-run"),
                          result: $("check-result"), summary: $("check-summary"),
                          list: $("check-findings"), config: $("check-config"),
                          lines: $("check-lines") });
    this.busy = false;
    this.caller = null;
    this.button.addEventListener("click", () => this.run());
  }

  /** Offer the check to an admin (``caller`` from /status; null: unknown or refused). */
  show(caller) {
    const admin = caller?.admin ? caller : null;
    if (admin?.id === this.caller?.id) return;
    this.caller = admin;
    this.row.hidden = !admin;
    this.result.hidden = true;
    // An open daemon's page calls no admin route unasked: its last findings wait for a click.
    if (admin && admin.id !== "local") this.load();
  }

  /** Show the last check's findings, if the daemon ran one. */
  async load() {
    try {
      const last = await api.lastCheck();
      if (last) this.render(last);
    } catch {
      // The status bar already says why the daemon refused.
    }
  }

  async run() {
    if (this.busy) return;
    this.busy = true;
    this.button.setAttribute("aria-busy", "true");
    this.button.textContent = t("check.running");
    this.result.hidden = false;
    this.say(t("check.asking"), "info");
    try {
      this.render(await api.check());
    } catch (err) {
      this.say(t("check.failed", { error: err.message }), "bad");
      this.list.replaceChildren();
      this.config.hidden = true;
    } finally {
      this.busy = false;
      this.button.removeAttribute("aria-busy");
      this.button.textContent = t("check.run");
    }
  }

  render(report) {
    this.result.hidden = false;
    const warned = report.findings.some((f) => f.level === "warn");
    const level = report.ok ? (warned ? "warn" : "ok") : "bad";
    const verdict = t({ ok: "check.verdict.ok", warn: "check.verdict.warn", bad: "check.verdict.bad" }[level]);
    this.say(nodes("check.summary", { verdict, summary: verbatim(report.summary) }), level);
    this.list.replaceChildren(...report.findings.map(item));
    this.config.hidden = report.config_lines.length === 0;
    this.lines.textContent = report.config_lines.join("\n");
  }

  say(text, level) {
    this.summary.replaceChildren(...(typeof text === "string" ? [text] : text));
    this.summary.dataset.level = level;
  }
}
