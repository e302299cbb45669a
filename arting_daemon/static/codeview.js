// The "same request as code" dialog: tabs for curl, the OpenAI SDK and A1111, and Copy.

import { root } from "./api.js";
import { sentences, t } from "./i18n.js";
import { KINDS, notes } from "./snippets.js";

const $ = (id) => document.getElementById(id);

export class CodeView {
  constructor(needsKey) {
    this.needsKey = needsKey;
    this.dialog = $("code-dialog");
    this.tabs = [...this.dialog.querySelectorAll("[role=tab]")];
    this.kind = "curl";
    this.req = null;
    this.opener = null;
    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.show(tab.dataset.kind));
      tab.addEventListener("keydown", (event) => this.arrows(event, tab));
    }
    $("code-copy").addEventListener("click", () => this.copy());
    $("code-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => this.opener?.focus());
  }

  open(req, opener) {
    this.req = req;
    this.opener = opener;
    this.show(this.kind);
    this.dialog.showModal();
    this.tabs.find((t) => t.dataset.kind === this.kind).focus();
  }

  show(kind) {
    this.kind = kind;
    for (const tab of this.tabs) {
      const on = tab.dataset.kind === kind;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    const ctx = { base: root.href, auth: this.needsKey() };
    $("code-text").textContent = KINDS[kind](this.req, ctx);
    $("code-text").dataset.kind = kind;
    $("code-note").replaceChildren(...sentences(notes(kind, this.req, ctx)));
    $("code-copied").textContent = "";
  }

  /** Left/Right/Home/End move between tabs, as in every tab list. */
  arrows(event, tab) {
    const i = this.tabs.indexOf(tab);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: this.tabs.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    const next = this.tabs[(to + this.tabs.length) % this.tabs.length];
    this.show(next.dataset.kind);
    next.focus();
  }

  async copy() {
    const text = $("code-text").textContent;
    try {
      await navigator.clipboard.writeText(text);
      $("code-copied").textContent = t("copied");
    } catch {
      // No clipboard access (a plain-http address that is not localhost): select it instead.
      const range = document.createRange();
      range.selectNodeContents($("code-text"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $("code-copied").textContent = t("copy.selected");
    }
  }
}
