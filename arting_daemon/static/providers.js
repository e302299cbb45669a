// The daemon's providers, as the catalog lists them: how the page names them when it
// speaks of a job (where it is made, where it fell back from). With one provider (Arting
// alone) the page says nothing about providers.

const labels = new Map();

/** Learn the providers from the catalog's ``providers`` list. */
export function knowProviders(list) {
  labels.clear();
  for (const p of list || []) labels.set(p.name, p.label);
}

export const providerLabel = (name) => labels.get(name) || name || "the provider";

/** Whether the page should say which provider a job is on. */
export const severalProviders = () => labels.size > 1;

/** "Arting failed (…); it moved to Studio." per move, or "" without any. */
export function routeText(job) {
  return (job.fallbacks || []).map((move) =>
    `${providerLabel(move.from)} failed (${move.error.message.replace(/\.$/, "")}); it moved to ${providerLabel(move.to)}.`)
    .join(" ");
}
