// The keys panel, for the operator's (admin) key only: make a user key — its secret shown
// this once, with Copy —, list every key with today's usage, change a key's limits, and
// revoke one (after a confirmation). A user key never sees the panel, and the daemon
// refuses it the admin routes anyway.
//
// The new secret lives only in the one field that shows it: never stored, never put in a
// URL, and gone when the person presses Done, makes another key, or the page's key changes.

import { call, json, serverNow } from "./api.js";
import { clearFieldError, clearFieldErrors } from "./form.js";
import { date, nodes, number, t, verbatim } from "./i18n.js";
import { imagesText, jobsText, when } from "./usage.js";

const EVERY = 15000;
const DAY = 86400;
/** The limits a key may have: the words that name each, and its least value. */
const NUMBERS = {
  images_per_day: ["keys.field.images_per_day", 0],
  requests_per_minute: ["keys.field.requests_per_minute", 1],
  max_concurrent: ["keys.field.max_concurrent", 1],
};
/** Request fields whose errors a field of the form shows. */
const ERROR_FIELD = { expires_at: "expires" };
/** Fields that share another's error line. */
const ERROR_SLOT = { expires_on: "expires" };
const slotOf = (name) => ERROR_SLOT[name] || name;

const $ = (id) => document.getElementById(id);

function fieldError(name, message) {
  return Object.assign(new Error(message), { param: name });
}

/** One copy of the key's fields (name, limits, models, expiry), for making or changing. */
class KeyFields {
  constructor(slot, prefix, { keep = false } = {}) {
    this.root = $("key-fields-template").content.firstElementChild.cloneNode(true);
    this.prefix = prefix;
    for (const input of this.root.querySelectorAll("[data-name]")) {
      input.id = prefix + input.dataset.name;
      const error = this.root.querySelector(`[data-error="${slotOf(input.dataset.name)}"]`);
      if (error) {
        error.id = `${prefix}${slotOf(input.dataset.name)}-error`;
        input.setAttribute("aria-describedby", error.id);
      }
    }
    for (const label of this.root.querySelectorAll("label[data-for]")) label.htmlFor = prefix + label.dataset.for;
    this.formError = this.root.querySelector('[data-error="form"]');
    this.keep = keep ? document.createElement("option") : null;
    if (this.keep) {
      this.keep.value = "keep";
      this.field("expires").prepend(this.keep);
    }
    this.field("expires").addEventListener("change", () => this.showDate());
    this.root.addEventListener("input", (event) => clearFieldError(event.target));
    slot.replaceChildren(this.root);
    this.reset();
  }

  field(name) {
    return this.root.querySelector(`[data-name="${name}"]`);
  }

  /** A checkbox for each model the daemon offers. */
  setModels(models) {
    const list = this.root.querySelector(".model-checks");
    list.replaceChildren(...models.map((id, i) => {
      const box = Object.assign(document.createElement("input"), {
        type: "checkbox", value: id, id: `${this.prefix}model-${i}`, name: "models" });
      const label = Object.assign(document.createElement("label"), { htmlFor: box.id, textContent: id });
      const item = document.createElement("li");
      item.append(box, label);
      return item;
    }));
  }

  reset() {
    for (const name of ["name", ...Object.keys(NUMBERS), "expires_on"]) this.field(name).value = "";
    for (const box of this.root.querySelectorAll(".model-checks input")) box.checked = false;
    this.field("expires").value = this.keep ? "keep" : "never";
    this.showDate();
    this.clearErrors();
  }

  /** The form holds ``key`` as it is (for changing it). */
  fill(key) {
    this.reset();
    this.field("name").value = key.name;
    for (const name of Object.keys(NUMBERS)) this.field(name).value = key[name] ?? "";
    const boxes = [...this.root.querySelectorAll(".model-checks input")];
    for (const box of boxes) box.checked = Boolean(key.models?.includes(box.value));
    this.keep.textContent = key.expires_at ? t("keys.expires.keep", { date: date(key.expires_at) })
      : t("keys.expires.keep_never");
  }

  showDate() {
    this.root.querySelector(".expiry-date").hidden = this.field("expires").value !== "date";
  }

  /** The request body the fields say, or throws an error naming the field to fix. */
  read() {
    const name = this.field("name").value.trim();
    if (!name) throw fieldError("name", t("keys.error.name"));
    const body = { name };
    for (const [field, [what, min]] of Object.entries(NUMBERS)) {
      const input = this.field(field);
      const raw = input.value.trim();
      const value = Number(raw);
      if (input.validity.badInput || (raw && (!Number.isInteger(value) || value < min))) {
        throw fieldError(field, t("keys.error.number", { what: t(what), min }));
      }
      body[field] = raw ? value : null;
    }
    const models = [...this.root.querySelectorAll(".model-checks input:checked")].map((b) => b.value);
    body.models = models.length ? models : null;
    const expires = this.field("expires").value;
    if (expires === "never") body.expires_at = null;
    else if (expires === "date") body.expires_at = this.endOfDay();
    else if (expires !== "keep") body.expires_at = new Date((serverNow() + Number(expires) * DAY) * 1000).toISOString();
    return body;
  }

  /** The end of the chosen day, this browser's time: the key works through that day. */
  endOfDay() {
    const day = this.field("expires_on").value;
    const end = day ? new Date(`${day}T23:59:59`) : null;
    if (!end || Number.isNaN(end.getTime())) throw fieldError("expires_on", t("keys.error.day"));
    if (end.getTime() / 1000 <= serverNow()) throw fieldError("expires_on", t("keys.error.day_over"));
    return end.toISOString();
  }

  /** Show an error at the field it names (the daemon's ``param`` too), else below them. */
  showError(err) {
    const name = ERROR_FIELD[err.param] || err.param;
    const field = name && this.field(name);
    const slot = field && this.root.querySelector(`[data-error="${slotOf(name)}"]`);
    if (field && slot) {
      slot.textContent = err.message;
      slot.hidden = false;
      field.setAttribute("aria-invalid", "true");
      field.focus();
    } else {
      this.formError.textContent = err.message;
      this.formError.hidden = false;
    }
  }

  clearErrors() {
    clearFieldErrors(this.root);
  }
}

/** [state, the state's words key, nodes saying since or until when]. */
function stateOf(key) {
  if (key.revoked_at) return ["revoked", "keys.state.revoked", nodes("keys.revoked_on", { date: when(key.revoked_at) })];
  if (key.expires_at && key.expires_at <= serverNow()) {
    return ["expired", "keys.state.expired", nodes("keys.expired_on", { date: when(key.expires_at) })];
  }
  return ["active", "keys.state.active", key.expires_at ? nodes("keys.expires_on", { date: when(key.expires_at) })
    : [t("keys.no_expiry")]];
}

/** The key's usage today and its limits, as the card lists them. */
function factsOf(key) {
  const { today, totals, remaining } = key.usage;
  const limit = key.images_per_day;
  const reserved = limit === null ? 0 : Math.max(0, limit - today.images - remaining.images_today);
  const no = (value) => (value === null ? t("keys.no_limit") : number(value));
  return [
    ["usage.images_today", imagesText(limit, today.images, reserved, remaining.images_today)],
    ["keys.requests_today", number(totals.requests)],
    ["keys.jobs_today", jobsText(totals.jobs)],
    ["keys.requests_a_minute", no(key.requests_per_minute)],
    ["keys.field.max_concurrent", no(key.max_concurrent)],
    ["usage.models", key.models ? verbatim(key.models.join(", ")) : t("usage.models.all")],
  ];
}

export class KeysPanel {
  constructor() {
    this.section = $("keys");
    this.list = $("key-list");
    this.caller = null;
    this.cards = new Map();
    this.editing = null;
    this.create = new KeyFields($("key-create-fields"), "new-key-");
    this.edit = new KeyFields($("key-edit-fields"), "edit-key-", { keep: true });
    $("key-create").addEventListener("submit", (event) => { event.preventDefault(); this.make(); });
    $("keys-refresh").addEventListener("click", () => this.load());
    $("key-secret-copy").addEventListener("click", () => this.copySecret());
    $("key-secret-done").addEventListener("click", () => { this.dropSecret(); this.create.field("name").focus(); });
    $("key-edit-form").addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
    $("key-edit-cancel").addEventListener("click", () => $("key-edit").close());
    $("key-edit").addEventListener("close", () => this.editing?.opener.focus());
    setInterval(() => { if (this.caller && !document.hidden) this.load(); }, EVERY);
  }

  populate(catalog) {
    const models = catalog.models.map((m) => m.id);
    this.create.setModels(models);
    this.edit.setModels(models);
  }

  /** Shown to the operator's keys only: not to user keys, nor to the keyless local user
   *  (a key made there would lock the page out, as no admin key could then open it). */
  show(caller) {
    const admin = caller?.admin && caller.id !== "local" ? caller : null;
    if (admin?.id === this.caller?.id) return;
    this.caller = admin;
    this.section.hidden = !admin;
    this.dropSecret();
    if ($("key-edit").open) $("key-edit").close();
    this.list.replaceChildren();
    this.cards.clear();
    this.say("");
    this.done("");
    if (admin) this.load();
  }

  async load() {
    try {
      const keys = (await json(call("GET", "admin/keys"))).data;
      if (this.caller) this.render(keys);
    } catch (err) {
      if (this.caller) this.say(t("keys.list_failed", { error: err.message }), "bad");
    }
  }

  /** Update the cards in place (a card being worked on keeps its focus); new keys on top. */
  render(keys) {
    for (const key of [...keys].sort((a, b) => a.created_at - b.created_at)) {
      let card = this.cards.get(key.id);
      if (!card) {
        card = this.card(key);
        this.cards.set(key.id, card);
        this.list.prepend(card.el);
      }
      this.update(card, key);
    }
    const revoked = keys.filter((k) => k.revoked_at).length;
    const count = { n: keys.length, count: number(keys.length), revoked: number(revoked) };
    this.say(!keys.length ? t("keys.none") : t(revoked ? "keys.count_revoked" : "keys.count", count));
  }

  card(key) {
    const el = $("key-card-template").content.firstElementChild.cloneNode(true);
    el.dataset.keyId = key.id;
    const card = { el, key };
    const part = (name) => el.querySelector(`.${name}`);
    part("key-change").addEventListener("click", (event) => this.open(card, event.currentTarget));
    part("key-revoke").addEventListener("click", () => this.confirm(card, true));
    part("key-keep").addEventListener("click", () => this.confirm(card, false));
    part("key-revoke-now").addEventListener("click", () => this.revoke(card));
    part("key-confirm").addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.confirm(card, false);
    });
    return card;
  }

  update(card, key) {
    card.key = key;
    const { el } = card;
    const part = (name) => el.querySelector(`.${name}`);
    const [state, words, since] = stateOf(key);
    el.dataset.state = state;
    part("key-name").textContent = key.name;
    part("key-badge").textContent = t(words);
    part("key-meta").replaceChildren(verbatim(`${key.key_prefix}…`), " · ",
                                     ...nodes("keys.made_on", { date: when(key.created_at) }), " · ", ...since);
    part("key-facts").replaceChildren(...factsOf(key).flatMap(([name, value]) => {
      const dd = document.createElement("dd");
      dd.append(value);
      return [Object.assign(document.createElement("dt"), { textContent: t(name) }), dd];
    }));
    part("key-change").setAttribute("aria-label", t("keys.change.label", { name: key.name }));
    part("key-revoke").setAttribute("aria-label", t("keys.revoke.label", { name: key.name }));
    part("key-confirm").setAttribute("aria-label", t("keys.revoke.question", { name: key.name }));
    part("key-confirm-text").replaceChildren(...nodes("keys.revoke.confirm", { name: verbatim(key.name) }));
    if (state === "revoked") {
      part("key-actions").hidden = true;
      part("key-confirm").hidden = true;
    }
  }

  /** Ask before revoking (focus on the safe answer), or put the question away. */
  confirm(card, ask) {
    const part = (name) => card.el.querySelector(`.${name}`);
    part("key-actions").hidden = ask;
    part("key-confirm").hidden = !ask;
    part(ask ? "key-keep" : "key-revoke").focus();
  }

  async revoke(card) {
    const button = card.el.querySelector(".key-revoke-now");
    button.disabled = true;
    try {
      const key = await json(call("DELETE", `admin/keys/${encodeURIComponent(card.key.id)}`));
      this.update(card, { ...card.key, ...key });
      card.el.focus();
      this.done(nodes("keys.revoked", { name: verbatim(key.name) }), "ok");
    } catch (err) {
      this.done(nodes("keys.not_revoked", { name: verbatim(card.key.name), error: err.message }), "bad");
    } finally {
      button.disabled = false;
    }
  }

  open(card, opener) {
    this.editing = { card, opener };
    this.edit.fill(card.key);
    $("key-edit-title").replaceChildren(...nodes("keys.edit.named", { name: verbatim(card.key.name) }));
    $("key-edit").showModal();
    this.edit.field("name").focus();
  }

  async save() {
    const { card } = this.editing;
    this.edit.clearErrors();
    try {
      const body = this.edit.read();
      const key = await json(call("PATCH", `admin/keys/${encodeURIComponent(card.key.id)}`, { body }));
      $("key-edit").close();
      this.done(nodes("keys.saved", { name: verbatim(key.name) }), "ok");
      await this.load();
    } catch (err) {
      this.edit.showError(err);
    }
  }

  async make() {
    this.create.clearErrors();
    this.dropSecret();
    const button = $("key-create-submit");
    button.disabled = true;
    try {
      const made = await json(call("POST", "admin/keys", { body: this.create.read() }));
      this.create.reset();
      this.showSecret(made);
      this.done("");
      await this.load();
    } catch (err) {
      this.create.showError(err);
    } finally {
      button.disabled = false;
    }
  }

  showSecret(made) {
    $("key-secret-title").replaceChildren(...nodes("keys.secret.for", { name: verbatim(made.name) }));
    $("key-secret-value").value = made.key;
    $("key-secret-copied").textContent = "";
    $("key-secret").hidden = false;
    $("key-secret-copy").focus();
  }

  dropSecret() {
    $("key-secret-value").value = "";
    $("key-secret").hidden = true;
  }

  async copySecret() {
    const field = $("key-secret-value");
    try {
      await navigator.clipboard.writeText(field.value);
      $("key-secret-copied").textContent = t("copied");
    } catch {
      // No clipboard access (a plain-http address that is not localhost): select it instead.
      field.select();
      $("key-secret-copied").textContent = t("copy.selected");
    }
  }

  /** The list's state: how many keys, or why there is no list. */
  say(text, level = "") {
    $("keys-state").textContent = text;
    $("keys-state").dataset.level = level;
  }

  /** What the last action did. */
  done(words, level = "") {
    $("keys-done").replaceChildren(...(typeof words === "string" ? [words] : words));
    $("keys-done").dataset.level = level;
    $("keys-done").hidden = !words.length;
  }
}
