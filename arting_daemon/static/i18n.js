// The page's words, in the reader's language. Every visible string is in one catalogue
// per language (static/lang-<code>.json, listed in static/languages.json); nothing the
// page says is written in its markup or its scripts. The language is the one picked with
// the header's control (kept in this browser's localStorage), else the first of the
// browser's languages we have, else English. Dates, numbers, lists and durations are
// formatted for it with Intl.
//
// A catalogue string may hold {placeholders} and, for emphasis, <code>, <kbd> and
// <strong> (built as elements, never parsed as HTML). A value may also be an object of
// plural forms ({"one": …, "other": …}) chosen by Intl.PluralRules with the ``n`` given.

const CHOICE = "arting-2api.language";
const FALLBACK = "en";
const TAGS = /<(code|kbd|strong)>(.*?)<\/\1>/g;
/** Attributes a catalogue may fill: data-i18n-<name>="key". */
const ATTRIBUTES = ["placeholder", "title", "aria-label", "alt", "label"];

let lang = FALLBACK;
let words = {};
let languages = {};

const base = new URL(".", import.meta.url);

async function load(name) {
  const resp = await fetch(new URL(name, base), { cache: "no-cache" });
  if (!resp.ok) throw new Error(`${name}: ${resp.status}`);
  return resp.json();
}

/** The language to show: the saved choice, else the browser's first we have. */
function pick(available) {
  let saved = "";
  try { saved = localStorage.getItem(CHOICE) || ""; } catch { /* storage off */ }
  if (available.includes(saved)) return saved;
  for (const wanted of navigator.languages?.length ? navigator.languages : [navigator.language]) {
    const exact = available.find((code) => code.toLowerCase() === String(wanted).toLowerCase());
    if (exact) return exact;
    const primary = String(wanted).split("-")[0].toLowerCase();
    const near = available.find((code) => code.split("-")[0].toLowerCase() === primary);
    if (near) return near;
  }
  return FALLBACK;
}

/** Load the catalogue of the language to show, and put its words into the page. */
export async function start() {
  languages = await load("languages.json");
  lang = pick(Object.keys(languages));
  words = await load(`lang-${lang}.json`);
  document.documentElement.lang = lang;
  translate(document);
  for (const template of document.querySelectorAll("template")) translate(template.content);
  offerLanguages(document.getElementById("language"));
}

/** The language control: every language in its own name; a change is kept and shown. */
function offerLanguages(select) {
  if (!select) return;
  select.replaceChildren(...Object.entries(languages).map(([code, name]) => {
    const option = Object.assign(document.createElement("option"),
                                 { value: code, textContent: name, lang: code, selected: code === lang });
    option.setAttribute("translate", "no");
    return option;
  }));
  select.addEventListener("change", () => {
    try { localStorage.setItem(CHOICE, select.value); } catch { /* storage off: this once */ }
    location.reload();
  });
}

export const language = () => lang;

function entry(key, n) {
  let value = words[key];
  if (value === undefined) {
    console.warn(`no words for ${key} in lang-${lang}.json`);
    return key;
  }
  if (typeof value === "object") {
    value = value[new Intl.PluralRules(lang).select(n ?? 0)] ?? value.other;
  }
  return value;
}

const fill = (text, params) => text.replace(/\{(\w+)\}/g, (whole, name) =>
  (name in params ? String(params[name]) : whole));

/** The words for ``key``, with its {placeholders} filled (``n`` also picks the plural). */
export function t(key, params = {}) {
  return fill(entry(key, params.n), params).replace(TAGS, "$2");
}

/** The same as nodes: <code>/<kbd>/<strong> as elements, and any parameter that is a
 *  Node (a <time>, a name kept as it is) put in its place. */
export function nodes(key, params = {}) {
  const out = [];
  const text = entry(key, params.n);
  const pieces = text.split(/(\{\w+\}|<(?:code|kbd|strong)>.*?<\/(?:code|kbd|strong)>)/);
  for (const piece of pieces) {
    if (!piece) continue;
    const tag = piece.match(/^<(code|kbd|strong)>(.*)<\/\1>$/);
    const slot = piece.match(/^\{(\w+)\}$/);
    if (tag) {
      out.push(Object.assign(document.createElement(tag[1]), { textContent: fill(tag[2], params) }));
    } else if (slot && slot[1] in params) {
      const value = params[slot[1]];
      out.push(value instanceof Node ? value : document.createTextNode(String(value)));
    } else {
      out.push(document.createTextNode(piece));
    }
  }
  return out;
}

/** Fill every element of ``root`` marked with data-i18n (its text) or data-i18n-<attr>. */
export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.replaceChildren(...nodes(el.dataset.i18n));
  for (const name of ATTRIBUTES) {
    for (const el of root.querySelectorAll(`[data-i18n-${name}]`)) {
      el.setAttribute(name, t(el.getAttribute(`data-i18n-${name}`)));
    }
  }
}

/** Something the page shows as it is, never translated (a prompt, a model id, a name). */
export function verbatim(text, tag = "span") {
  const el = Object.assign(document.createElement(tag), { textContent: String(text) });
  el.setAttribute("translate", "no");
  return el;
}

// --- formatting for the language ---------------------------------------------------------

export const number = (value, options) => new Intl.NumberFormat(lang, options).format(value);

export const list = (items) =>
  new Intl.ListFormat(lang, { style: "narrow", type: "conjunction" }).format(items.map(String));

/** Sentences one after the other, each its own text node (each one catalogue string). */
export const sentences = (texts) => texts.flatMap((text, i) => (i ? [" ", text] : [text]));

/** A daemon time (Unix seconds) as a date and time of this language. */
export const dateTime = (seconds) => new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" })
  .format(new Date(seconds * 1000));

export const date = (seconds) => new Intl.DateTimeFormat(lang, { dateStyle: "medium" })
  .format(new Date(seconds * 1000));

/** "3 minutes ago" and the like. */
export const relative = (value, unit) =>
  new Intl.RelativeTimeFormat(lang, { numeric: "auto" }).format(value, unit);

/** A <time> element: the text for people, the machine-readable instant beside it. */
export function timeElement(seconds, text) {
  const el = document.createElement("time");
  el.dateTime = new Date(seconds * 1000).toISOString();
  el.textContent = text;
  return el;
}

/** A span of time in seconds, as the catalogue words it: "45 s", "2 min 05 s", "1 h 20 min". */
export function duration(value) {
  const s = Math.max(0, Math.round(value));
  if (s < 60) return t("duration.seconds", { s: number(s) });
  const m = Math.floor(s / 60);
  if (m < 90) return t("duration.minutes_seconds", { m: number(m), s: String(s % 60).padStart(2, "0") });
  return t("duration.hours_minutes", { h: number(Math.floor(m / 60)), m: number(m % 60) });
}

/** A wait in whole minutes (a quota's reset): "40 min", "3 h 5 min". */
export function minutes(value) {
  const m = Math.ceil(value / 60);
  return m < 60 ? t("duration.minutes", { m: number(m) })
    : t("duration.hours_minutes", { h: number(Math.floor(m / 60)), m: number(m % 60) });
}
