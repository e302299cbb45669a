// Jobs being generated: one card each, following the job's events (queue position,
// progress, elapsed time, ETA), with Cancel. A finished job moves to the gallery.

import { api, follow, isTerminal, serverNow } from "./api.js";
import { describe } from "./gallery.js";
import { providerLabel, routeText, severalProviders } from "./providers.js";

export function seconds(value) {
  const s = Math.max(0, Math.round(value));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

function stateText(job) {
  switch (job.state) {
    case "queued":
      return job.queue_position
        ? `Waiting in the queue: position ${job.queue_position}.`
        : "Waiting for a free slot.";
    case "submitting": return `Sending the job to ${providerLabel(job.provider)}…`;
    case "running": {
      const where = severalProviders() ? ` on ${providerLabel(job.provider)}` : "";
      return `${job.kind === "upscale" ? "Upscaling" : "Generating"}${where}… ${Math.round(job.progress * 100)} %`;
    }
    case "downloading": return "Downloading the images…";
    case "succeeded": return `Done: ${job.images.length} image${job.images.length === 1 ? "" : "s"}.`;
    case "cancelled": return "Cancelled.";
    case "failed": return `Failed: ${job.error?.message || "no reason was given."}`;
    default: return job.state;
  }
}

export class JobList {
  constructor({ list, empty, template, onSucceeded, onEnded }) {
    Object.assign(this, { list, empty, template, onSucceeded, onEnded });
    this.cards = new Map();
    setInterval(() => this.tick(), 1000);
  }

  /** Show a job and follow it to its end; ``reveal`` scrolls its card into view. */
  track(job, { reveal = false } = {}) {
    if (this.cards.has(job.id)) return;
    const el = this.template.content.firstElementChild.cloneNode(true);
    const card = { el, job, seenAt: Date.now(), abort: new AbortController() };
    el.dataset.jobId = job.id;
    el.querySelector(".job-prompt").textContent = describe(job);
    el.querySelector(".job-progress").setAttribute("aria-label", `Progress of “${describe(job)}”`);
    el.querySelector(".job-cancel").addEventListener("click", () => this.cancel(card));
    el.querySelector(".job-dismiss").addEventListener("click", () => this.remove(card));
    this.cards.set(job.id, card);
    this.list.prepend(el);
    this.update(card, job);
    // On a phone the list is below the form: bring a new job's card into view.
    if (reveal) el.scrollIntoView({ block: "nearest", behavior: "smooth" });
    follow(job.id, (current) => this.update(card, current),
           (err) => { card.el.querySelector(".job-state").textContent = `${err.message} Reconnecting…`; },
           card.abort.signal)
      .catch((err) => this.problem(card, err));
  }

  update(card, job) {
    const wasTerminal = isTerminal(card.job) && card.job !== job;
    Object.assign(card, { job, seenAt: Date.now() });
    const { el } = card;
    el.dataset.state = job.state;
    const bar = el.querySelector(".job-progress");
    if (job.state === "queued" || job.state === "submitting") bar.removeAttribute("value");
    else bar.value = job.state === "succeeded" ? 1 : job.progress;
    el.querySelector(".job-state").textContent = stateText(job);
    const route = el.querySelector(".job-route");
    route.textContent = routeText(job);
    route.hidden = !route.textContent;
    this.showTimes(card);
    const done = isTerminal(job);
    el.querySelector(".job-cancel").hidden = done;
    el.querySelector(".job-dismiss").hidden = !done || job.state === "succeeded";
    this.empty.hidden = this.cards.size > 0;
    if (!done || wasTerminal) return;
    card.abort.abort();
    if (job.state === "succeeded") {
      this.onSucceeded(job);
      setTimeout(() => this.remove(card), 1500);
    }
    this.onEnded(job);
  }

  showTimes(card) {
    const { job, seenAt } = card;
    const end = job.finished_at ?? serverNow();
    const took = seconds(end - job.created_at);
    const parts = [isTerminal(job) ? `Took ${took}` : `Elapsed ${took}`];
    if (!isTerminal(job) && job.eta_seconds !== null) {
      const left = job.eta_seconds - (Date.now() - seenAt) / 1000;
      parts.push(left > 0.5 ? `about ${seconds(left)} left` : "almost done");
    }
    card.el.querySelector(".job-times").textContent = parts.join(" · ");
  }

  tick() {
    for (const card of this.cards.values()) if (!isTerminal(card.job)) this.showTimes(card);
  }

  async cancel(card) {
    const button = card.el.querySelector(".job-cancel");
    button.disabled = true;
    button.textContent = "Cancelling…";
    try {
      this.update(card, await api.cancel(card.job.id));
    } catch (err) {
      this.problem(card, err);
    } finally {
      button.disabled = false;
      button.textContent = "Cancel";
    }
  }

  problem(card, err) {
    card.el.querySelector(".job-state").textContent = err.message;
    card.el.dataset.state = "problem";
    card.el.querySelector(".job-dismiss").hidden = false;
  }

  remove(card) {
    card.abort.abort();
    const focused = card.el.contains(document.activeElement);
    card.el.remove();
    this.cards.delete(card.job.id);
    this.empty.hidden = this.cards.size > 0;
    if (focused) document.getElementById("prompt").focus();
  }
}
