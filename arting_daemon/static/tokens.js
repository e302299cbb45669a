// The Arting tokens panel, the operator's (an admin key, or an open daemon): every token's
// state, balance and last error; the operator events (a token refused, a low balance, none
// usable); add a token by pasting what the browser's developer tools copy (a token, a cURL
// command, request headers); remove a runtime token (after a confirmation); probe the
// unhealthy ones. The pasted text goes to the daemon once and is cleared from the field: the
// page never shows a token again, only labels and fingerprints.

import { call, json } from "./api.js";
import { nodes, number, t, verbatim } from "./i18n.js";
import { when } from "./usage.js";

const EVERY = 15000;
const $ = (id) => document.getElementById(id);
const SOURCES = { configuration: "tokens.source.configuration", runtime: "tokens.source.runtime" };
const STATES = { ok: "tokens.state.ok", cooling: "tokens.state.cooling", blocked: "tokens.state.blocked",
                 invalid: "tokens.state.invalid", retired: "tokens.state.retired" };
const EVENTS = { token_refused: "tokens.event.token_refused", low_balance: "tokens.event.low_balance",
                 pool_exhausted: "tokens.event.pool_exhausted" };
/** The daemon's word, in the page's language where the catalogue has it. */
const word = (words, value) => (words[value] ? t(words[value]) : value);

/** The card's facts: [words key, value]. */
function factsOf(token) {
  const facts = [
    ["tokens.source", word(SOURCES, token.source)],
    ["tokens.balance", token.balance === null ? t("tokens.unknown") : number(token.balance)],
    ["tokens.images_today", token.daily_limit === null ? number(token.images_today)
      : t("tokens.of", { n: number(token.images_today), limit: number(token.daily_limit) })],
  ];
  if (token.paced_until) facts.push(["tokens.paced_until", when(token.paced_until)]);
  if (token.fingerprint) facts.push(["tokens.fingerprint", verbatim(token.fingerprint, "code")]);
  if (token.cookies.length) facts.push(["tokens.cookies", verbatim(token.cookies.join(", "))]);
  if (token.last_error) facts.push(["tokens.last_error", verbatim(token.last_error)]);
  return facts;
}

export class TokensPanel {
  constructor() {
    this.section = $("tokens");
    this.list = $("token-list");
    this.caller = null;
    this.listed = false;        // the list was asked for (then it refreshes by itself)
    this.cards = new Map();
    $("token-add").addEventListener("submit", (event) => { event.preventDefault(); this.add(); });
    $("tokens-refresh").addEventListener("click", () => this.load());
    $("tokens-probe").addEventListener("click", () => this.probe());
    setInterval(() => { if (this.listed && !document.hidden) this.load(); }, EVERY);
  }

  /** Shown to an admin (``caller`` from /status; null: unknown or refused). */
  show(caller, events = []) {
    this.events(events);
    const admin = caller?.admin ? caller : null;
    if (admin?.id === this.caller?.id) return;
    this.caller = admin;
    this.listed = false;
    this.section.hidden = !admin;
    this.list.replaceChildren();
    this.cards.clear();
    this.done("");
    // An open daemon's page calls no admin route unasked: its tokens wait for a click.
    if (admin && admin.id !== "local") this.load();
    else if (admin) this.done(t("tokens.ask"));
  }

  /** The latest operator events, newest first (the status carries them). */
  events(events) {
    const box = $("tokens-events");
    box.replaceChildren(...events.slice(-5).reverse().map((e) => {
      const li = document.createElement("li");
      li.dataset.event = e.event;
      li.append(...nodes("tokens.event", { when: when(e.at), event: word(EVENTS, e.event),
                                           message: verbatim(e.message) }));
      return li;
    }));
    box.hidden = !events.length;
  }

  async load() {
    try {
      const view = await json(call("GET", "admin/tokens"));
      if (!this.caller) return;
      if (!this.listed) this.done("");      // "Refresh lists the tokens" has been done
      this.render(view.tokens);
    } catch (err) {
      if (this.caller) this.done(t("tokens.list_failed", { error: err.message }), "bad");
    }
  }

  render(tokens) {
    this.listed = Boolean(this.caller);
    const seen = new Set();
    for (const token of tokens) {
      const id = `${token.label}:${token.fingerprint ?? token.source}`;
      seen.add(id);
      let card = this.cards.get(id);
      if (!card) {
        card = this.card(token);
        this.cards.set(id, card);
        this.list.append(card.el);
      }
      this.update(card, token);
    }
    for (const [id, card] of this.cards) {
      if (!seen.has(id)) { card.el.remove(); this.cards.delete(id); }
    }
  }

  card(token) {
    const el = $("token-card-template").content.firstElementChild.cloneNode(true);
    const card = { el, token };
    const part = (name) => el.querySelector(`.${name}`);
    part("token-remove").addEventListener("click", () => this.confirm(card, true));
    part("token-keep").addEventListener("click", () => this.confirm(card, false));
    part("token-remove-now").addEventListener("click", () => this.remove(card));
    return card;
  }

  update(card, token) {
    card.token = token;
    const part = (name) => card.el.querySelector(`.${name}`);
    card.el.dataset.label = token.label;
    card.el.dataset.state = token.retired ? "retired" : token.state;
    part("token-label").textContent = token.label;
    part("token-badge").textContent = word(STATES, token.retired ? "retired" : token.state);
    part("token-facts").replaceChildren(...factsOf(token).flatMap(([name, value]) => {
      const dd = document.createElement("dd");
      dd.append(value);
      return [Object.assign(document.createElement("dt"), { textContent: t(name) }), dd];
    }));
    part("token-remove").setAttribute("aria-label", t("tokens.remove.label", { label: token.label }));
    part("token-confirm-text").replaceChildren(...nodes("tokens.remove.confirm", { label: verbatim(token.label) }));
    part("token-actions").hidden = token.source !== "runtime" || token.retired;
  }

  confirm(card, ask) {
    const part = (name) => card.el.querySelector(`.${name}`);
    part("token-actions").hidden = ask;
    part("token-confirm").hidden = !ask;
    part(ask ? "token-keep" : "token-remove").focus();
  }

  async remove(card) {
    const { label } = card.token;
    try {
      this.render((await json(call("DELETE", `admin/tokens/${encodeURIComponent(label)}`))).tokens);
      this.done(nodes("tokens.removed", { label: verbatim(label) }), "ok");
    } catch (err) {
      this.done(nodes("tokens.not_removed", { label: verbatim(label), error: err.message }), "bad");
    }
  }

  async add() {
    const paste = $("token-paste");
    const label = $("token-label").value.trim();
    const error = $("token-add-error");
    error.hidden = true;
    if (!paste.value.trim()) {
      error.textContent = t("tokens.paste.empty");
      error.hidden = false;
      paste.focus();
      return;
    }
    const button = $("token-add-submit");
    button.disabled = true;
    try {
      const body = { paste: paste.value, ...(label ? { label } : {}) };
      const view = await json(call("POST", "admin/tokens", { body }));
      paste.value = "";
      $("token-label").value = "";
      this.render(view.tokens);
      const added = view.added.join(", ");
      this.done(view.added.length ? nodes("tokens.added", { labels: verbatim(added) })
        : nodes("tokens.duplicate", { labels: verbatim(view.duplicates.join(", ")) }), "ok");
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  async probe() {
    const button = $("tokens-probe");
    button.disabled = true;
    try {
      const view = await json(call("POST", "admin/tokens/probe"));
      this.render(view.tokens);
      const probed = Object.entries(view.probed);
      this.done(probed.length ? t("tokens.probed", { results: probed.map(([l, r]) => `${l}: ${r}`).join(", ") })
        : t("tokens.probed.none"), "ok");
    } catch (err) {
      this.done(t("tokens.list_failed", { error: err.message }), "bad");
    } finally {
      button.disabled = false;
    }
  }

  done(words, level = "") {
    $("tokens-done").replaceChildren(...(typeof words === "string" ? [words] : words));
    $("tokens-done").dataset.level = level;
    $("tokens-done").hidden = !words.length;
  }
}
