// Jobs being generated: one card each, following the job's events (queue position,
// progress, elapsed time, ETA), with Cancel. A finished job moves to the gallery.

import { api, explain, follow, isTerminal, serverNow } from "./api.js";
import { describe } from "./gallery.js";
import { duration, number, t } from "./i18n.js";
import { providerLabel, routeText, severalProviders } from "./providers.js";

function stateText(job) {
  switch (job.state) {
    case "queued":
      return job.queue_position ? t("jobs.state.queued_at", { position: number(job.queue_position) })
        : t("jobs.state.queued");
    case "submitting": return t("jobs.state.submitting", { provider: providerLabel(job.provider) });
    case "running": {
      if (job.upstream_queue_position) {   // held in the provider's own queue (Midjourney's)
        return t("jobs.state.upstream_queue", { provider: providerLabel(job.provider),
                                                position: number(job.upstream_queue_position) });
      }
      const percent = number(Math.round(job.progress * 100));
      const upscale = job.kind === "upscale";
      if (!severalProviders()) return t(upscale ? "jobs.state.upscaling" : "jobs.state.generating", { percent });
      return t(upscale ? "jobs.state.upscaling_on" : "jobs.state.generating_on",
               { percent, provider: providerLabel(job.provider) });
    }
    case "downloading": return t("jobs.state.downloading");
    case "succeeded": return t("jobs.state.succeeded", { n: job.images.length, count: number(job.images.length) });
    // cancelled for a reason of its own (its key revoked): the daemon's words say which
    case "cancelled": return job.error && job.error.code !== "cancelled"
      ? t("jobs.state.cancelled_why", { error: explain(job.error) }) : t("jobs.state.cancelled");
    case "failed": return t("jobs.state.failed", { error: job.error ? explain(job.error) : t("jobs.state.no_reason") });
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
    el.querySelector(".job-progress").setAttribute("aria-label", t("jobs.progress", { job: describe(job) }));
    el.querySelector(".job-cancel").addEventListener("click", () => this.cancel(card));
    el.querySelector(".job-dismiss").addEventListener("click", () => this.remove(card));
    this.cards.set(job.id, card);
    this.list.prepend(el);
    this.update(card, job);
    // On a phone the list is below the form: bring a new job's card into view.
    if (reveal) el.scrollIntoView({ block: "nearest", behavior: "smooth" });
    follow(job.id, (current) => this.update(card, current),
           (err) => { card.el.querySelector(".job-state").textContent = t("jobs.reconnecting", { error: err.message }); },
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
    route.replaceChildren(...routeText(job));
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
    const took = duration(end - job.created_at);
    const parts = [t(isTerminal(job) ? "jobs.took" : "jobs.elapsed", { duration: took })];
    if (!isTerminal(job) && job.eta_seconds !== null) {
      const left = job.eta_seconds - (Date.now() - seenAt) / 1000;
      parts.push(left > 0.5 ? t("jobs.left", { duration: duration(left) }) : t("jobs.almost_done"));
    }
    // Each part a text node of its own: the separator is no sentence of any language.
    card.el.querySelector(".job-times").replaceChildren(...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
  }

  tick() {
    for (const card of this.cards.values()) if (!isTerminal(card.job)) this.showTimes(card);
  }

  async cancel(card) {
    const button = card.el.querySelector(".job-cancel");
    button.disabled = true;
    button.textContent = t("jobs.cancelling");
    try {
      this.update(card, await api.cancel(card.job.id));
    } catch (err) {
      this.problem(card, err);
    } finally {
      button.disabled = false;
      button.textContent = t("jobs.cancel");
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
