// Past results, newest first, a page at a time: each job's images with its settings,
// and what can be done with them (open, download, reuse the settings, copy as code,
// upscale 2× or 4× with a provider when the daemon offers it). An upscale is a result too.

import { api, root } from "./api.js";
import { date, number, relative, t, timeElement, verbatim } from "./i18n.js";
import { providerLabel, routeText, severalProviders } from "./providers.js";

const PAGE = 12;

/** When a result was made, as a <time>: "just now", "5 minutes ago", else its date. */
function ago(timestamp) {
  const s = (Date.now() / 1000) - timestamp;
  const text = s < 45 ? t("time.just_now")
    : s < 3600 ? relative(-Math.round(s / 60), "minute")
      : s < 86400 ? relative(-Math.round(s / 3600), "hour") : date(timestamp);
  return timeElement(timestamp, text);
}

const size = (w, h) => t("gallery.size", { w, h });

/** What an upscale result shows: its factor and size. */
function upscaleSettingsOf(req, job) {
  const first = job.images[0];
  return [
    ["gallery.upscaled", job.provider === "arting" || !job.provider
      ? t("gallery.upscaled.value", { scale: req.scale, version: req.version })
      : t("gallery.upscaled.with", { scale: req.scale, provider: providerLabel(job.provider) })],
    ["gallery.size.label", first ? size(first.width, first.height) : ""],
    ["gallery.made", ago(job.finished_at || job.created_at)],
  ].filter(([, value]) => value !== "");
}

/** The settings a person wants to see, in order; empty ones are left out. */
function settingsOf(req, job) {
  if (job.kind === "upscale") return upscaleSettingsOf(req, job);
  const seeds = job.images.map((i) => i.seed);
  const data = (value) => (value === "" || value === null ? "" : verbatim(value));
  const rows = [
    ["gallery.model", data(req.model)],
    ["gallery.provider", severalProviders() || job.fallbacks?.length ? data(providerLabel(job.provider)) : ""],
    ["gallery.fell_back", job.fallbacks?.length ? routeText(job) : ""],
    ["gallery.size.label", size(req.width, req.height)],
    [seeds.length > 1 ? "gallery.seeds" : "gallery.seed", seeds.length ? seeds.join(", ") : String(req.seed)],
    ["gallery.steps", number(req.steps)],
    ["gallery.guidance", number(req.guidance)],
    ["gallery.sampler", data(req.sampler)],
    ["gallery.loras", data(req.loras.map((l) => `${l.id} (${l.weight})`).join(", "))],
    ["gallery.negative", data(req.negative_prompt)],
    ["gallery.nsfw", t(req.nsfw ? "gallery.nsfw.allowed" : "gallery.nsfw.off")],
    ["gallery.made", ago(job.finished_at || job.created_at)],
    ["gallery.cache", job.cache === "hit" ? t("gallery.cache.hit") : ""],
  ];
  return rows.filter(([, value]) => value !== "" && value !== null);
}

const imageUrl = (hash) => new URL(`arting/v1/images/${hash}.png`, root).href;

/** The line under a result's pictures: its prompt, or what was upscaled. */
export function describe(job) {
  const req = job.request;
  return job.kind === "upscale"
    ? t("gallery.upscale.describe", { scale: req.scale, n: req.images.length, count: number(req.images.length) })
    : req.prompt;
}

export class Gallery {
  constructor({ list, state, more, template, onReuse, onCode, onUpscale }) {
    Object.assign(this, { list, state, more, template, onReuse, onCode, onUpscale });
    this.upscaling = false; // the daemon offers upscaling (its catalog says)
    this.next = null;
    this.shown = new Set();
    more.addEventListener("click", () => this.load(true));
  }

  /** Load the first page (again), or the next one. */
  async load(older = false) {
    this.more.disabled = true;
    try {
      const page = await api.list({ limit: PAGE, before: older ? this.next : null, state: "succeeded" });
      if (!older) {
        this.list.replaceChildren();
        this.shown.clear();
      }
      const first = page.data.find((job) => !this.shown.has(job.id));
      for (const job of page.data) this.append(job);
      this.next = page.next_before;
      this.more.hidden = this.next === null;
      this.showCount();
      if (older && first) this.list.querySelector(`[data-job-id="${first.id}"] .reuse`)?.focus();
    } catch (err) {
      this.state.textContent = err.message;
      this.state.dataset.level = "bad";
    } finally {
      this.more.disabled = false;
    }
  }

  showCount() {
    const n = this.shown.size;
    this.state.dataset.level = "";
    this.state.textContent = !n ? t("gallery.empty")
      : t(this.next === null ? "gallery.count" : "gallery.count_so_far", { n, count: number(n) });
  }

  /** A job that just finished goes first. */
  add(job) {
    if (this.shown.has(job.id)) return;
    this.list.prepend(this.render(job));
    this.shown.add(job.id);
    this.showCount();
  }

  append(job) {
    if (this.shown.has(job.id)) return;
    this.list.append(this.render(job));
    this.shown.add(job.id);
  }

  render(job) {
    const req = job.request;
    const upscaled = job.kind === "upscale";
    const el = this.template.content.firstElementChild.cloneNode(true);
    el.dataset.jobId = job.id;
    el.querySelector(".result-prompt").textContent = describe(job);
    const thumbs = el.querySelector(".thumbs");
    job.images.forEach((image, i) => {
      const url = imageUrl(image.hash);
      const item = document.createElement("li");
      item.className = "thumb";
      if (image.expired) {
        // Removed to keep the store under its cap: "Use these settings" makes it again.
        item.classList.add("expired");
        item.textContent = t("gallery.expired", { i: i + 1, seed: image.seed });
        thumbs.append(item);
        return;
      }
      const open = link(url, "", { target: "_blank", rel: "noopener", tabIndex: -1 });
      const which = upscaled ? t("gallery.which.upscaled", { scale: req.scale })
        : t("gallery.which.seed", { seed: image.seed });
      const img = Object.assign(document.createElement("img"), {
        src: url, width: image.width, height: image.height, loading: "lazy", decoding: "async",
        alt: t("gallery.image.alt", { i: i + 1, n: job.images.length, which, prompt: describe(job) }),
      });
      open.append(img);
      const actions = document.createElement("p");
      actions.className = "thumb-actions";
      const file = upscaled ? `arting-${image.hash.slice(0, 12)}-x${req.scale}.png`
                            : `arting-${image.seed}.png`;
      actions.append(
        link(url, t("gallery.open"), { target: "_blank", rel: "noopener", className: "open",
                                       ariaLabel: t("gallery.open.label", { i: i + 1, which }) }),
        link(url, t("gallery.download"), { download: file, className: "download",
                                           ariaLabel: t("gallery.download.label", { i: i + 1, which }) }));
      item.append(open, actions);
      thumbs.append(item);
    });
    thumbs.dataset.count = Math.min(job.images.length, 4);
    const dl = el.querySelector(".settings");
    for (const [name, value] of settingsOf(req, job)) {
      const dd = document.createElement("dd");
      dd.append(...(Array.isArray(value) ? value : [value instanceof Node ? value : String(value)]));
      dl.append(Object.assign(document.createElement("dt"), { textContent: t(name) }), dd);
    }
    const reuse = el.querySelector(".reuse");
    const asCode = el.querySelector(".as-code");
    reuse.hidden = asCode.hidden = upscaled;
    reuse.addEventListener("click", () => this.onReuse(req));
    asCode.addEventListener("click", (e) => this.onCode(req, e.currentTarget));
    for (const button of el.querySelectorAll(".upscale")) {
      const scale = Number(button.dataset.scale);
      button.hidden = !this.upscaling;
      // with several providers the daemon picks who upscales (a Midjourney picture's maker)
      button.setAttribute("aria-label", t(severalProviders() ? "gallery.upscale.label_any" : "gallery.upscale.label",
                                          { n: job.images.length, count: number(job.images.length), scale }));
      button.addEventListener("click", () => this.onUpscale(job, scale, button));
    }
    return el;
  }
}

function link(href, text, props) {
  const a = Object.assign(document.createElement("a"), { href, textContent: text }, props);
  if (props.ariaLabel) a.setAttribute("aria-label", props.ariaLabel);
  return a;
}
