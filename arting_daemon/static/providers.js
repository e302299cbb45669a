// The daemon's providers, as the catalog lists them: how the page names them when it
// speaks of a job (where it is made, where it fell back from). With one provider (Arting
// alone) the page says nothing about providers.

import { explain } from "./api.js";
import { sentences, t } from "./i18n.js";

const labels = new Map();

/** Learn the providers from the catalog's ``providers`` list. */
export function knowProviders(list) {
  labels.clear();
  for (const p of list || []) labels.set(p.name, p.label);
}

export const providerLabel = (name) => labels.get(name) || name || t("provider.unnamed");

/** Whether the page should say which provider a job is on. */
export const severalProviders = () => labels.size > 1;

/** "Arting failed (…); it moved to Studio." per move (each its own text node), or []. */
export function routeText(job) {
  return sentences((job.fallbacks || []).map((move) => t("provider.fell_back", {
    from: providerLabel(move.from), to: providerLabel(move.to),
    error: explain({ ...move.error, message: move.error.message.replace(/\.$/, "") }),
  })));
}
