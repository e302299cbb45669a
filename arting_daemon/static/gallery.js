// Past results, newest first, a page at a time: each job's images with its settings,
// and what can be done with them (open, download, reuse the settings, copy as code,
// upscale 2× or 4× with Arting when the daemon offers it). An upscale is a result too.

import { api, root } from "./api.js";
import { providerLabel, routeText, severalProviders } from "./providers.js";

const PAGE = 12;
const when = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

function ago(timestamp) {
  const s = (Date.now() / 1000) - timestamp;
  if (s < 45) return "just now";
  if (s < 3600) return when.format(-Math.round(s / 60), "minute");
  if (s < 86400) return when.format(-Math.round(s / 3600), "hour");
  return new Date(timestamp * 1000).toLocaleDateString();
}

const times = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;

/** What an upscale result shows: its factor and size. */
function upscaleSettingsOf(req, job) {
  const first = job.images[0];
  return [
    ["Upscaled", `${req.scale}× with Arting (image-enhance ${req.version})`],
    ["Size", first ? `${first.width} × ${first.height}` : ""],
    ["Made", ago(job.finished_at || job.created_at)],
  ].filter(([, value]) => value !== "");
}

/** The settings a person wants to see, in order; empty ones are left out. */
function settingsOf(req, job) {
  if (job.kind === "upscale") return upscaleSettingsOf(req, job);
  const seeds = job.images.map((i) => i.seed);
  const rows = [
    ["Model", req.model],
    ["Provider", severalProviders() || job.fallbacks?.length ? providerLabel(job.provider) : ""],
    ["Fell back", routeText(job)],
    ["Size", `${req.width} × ${req.height}`],
    [seeds.length > 1 ? "Seeds" : "Seed", seeds.length ? seeds.join(", ") : String(req.seed)],
    ["Steps", req.steps],
    ["Guidance", req.guidance],
    ["Sampler", req.sampler],
    ["LoRAs", req.loras.map((l) => `${l.id} (${l.weight})`).join(", ")],
    ["Negative", req.negative_prompt],
    ["NSFW", req.nsfw ? "allowed" : "off"],
    ["Made", ago(job.finished_at || job.created_at)],
    ["Cache", job.cache === "hit" ? "the same images as an earlier job, from the store" : ""],
  ];
  return rows.filter(([, value]) => value !== "" && value !== null);
}

const imageUrl = (hash) => new URL(`arting/v1/images/${hash}.png`, root).href;

/** The line under a result's pictures: its prompt, or what was upscaled. */
export function describe(job) {
  const req = job.request;
  return job.kind === "upscale" ? `Upscaled ${req.scale}×: ${times(req.images.length, "image")}`
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
    this.state.textContent = n ? `${n} result${n === 1 ? "" : "s"}${this.next === null ? "" : " so far"}, newest first.`
                               : "No images yet: what you generate appears here.";
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
        item.textContent = `Image ${i + 1} (seed ${image.seed}) has expired from the store.`;
        thumbs.append(item);
        return;
      }
      const open = link(url, "", { target: "_blank", rel: "noopener", tabIndex: -1 });
      const which = upscaled ? `upscaled ${req.scale}×` : `seed ${image.seed}`;
      const img = Object.assign(document.createElement("img"), {
        src: url, width: image.width, height: image.height, loading: "lazy", decoding: "async",
        alt: `Image ${i + 1} of ${job.images.length}, ${which}: ${describe(job)}`,
      });
      open.append(img);
      const actions = document.createElement("p");
      actions.className = "thumb-actions";
      const file = upscaled ? `arting-${image.hash.slice(0, 12)}-x${req.scale}.png`
                            : `arting-${image.seed}.png`;
      actions.append(
        link(url, "Open", { target: "_blank", rel: "noopener", className: "open",
                            ariaLabel: `Open image ${i + 1} (${which})` }),
        link(url, "Download", { download: file, className: "download",
                                ariaLabel: `Download image ${i + 1} (${which})` }));
      item.append(open, actions);
      thumbs.append(item);
    });
    thumbs.dataset.count = Math.min(job.images.length, 4);
    const dl = el.querySelector(".settings");
    for (const [name, value] of settingsOf(req, job)) {
      dl.append(Object.assign(document.createElement("dt"), { textContent: name }),
                Object.assign(document.createElement("dd"), { textContent: String(value) }));
    }
    const reuse = el.querySelector(".reuse");
    const asCode = el.querySelector(".as-code");
    reuse.hidden = asCode.hidden = upscaled;
    reuse.addEventListener("click", () => this.onReuse(req));
    asCode.addEventListener("click", (e) => this.onCode(req, e.currentTarget));
    for (const button of el.querySelectorAll(".upscale")) {
      const scale = Number(button.dataset.scale);
      button.hidden = !this.upscaling;
      button.setAttribute("aria-label", `Upscale ${job.images.length === 1 ? "this image" :
        `these ${job.images.length} images`} ${scale}× with Arting`);
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
