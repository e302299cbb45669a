// The page: wires the key panel, the status bar, the form, the jobs, the gallery, the
// caller's usage and (for an admin key) the keys panel.

import { api, apiKey, isTerminal } from "./api.js";
import { CheckPanel } from "./check.js";
import { CodeView } from "./codeview.js";
import { GenerateForm } from "./form.js";
import { Gallery } from "./gallery.js";
import { JobList } from "./jobs.js";
import { KeysPanel } from "./keys.js";
import { TokensPanel } from "./tokens.js";
import { StatusBar } from "./status.js";
import { UsageView } from "./usage.js";
import { start as startLanguage, t } from "./i18n.js";

await startLanguage();

const $ = (id) => document.getElementById(id);
const STATUS_EVERY = 5000;

const statusBar = new StatusBar();
const checkPanel = new CheckPanel();
const usage = new UsageView();
const keysPanel = new KeysPanel();
const tokensPanel = new TokensPanel();
const form = new GenerateForm($("gen-form"));
let authRequired = false;
let refused = false; // the last /status answer was 401
const codeView = new CodeView(() => authRequired || Boolean(apiKey.get()));

const gallery = new Gallery({
  list: $("gallery"), state: $("gallery-state"), more: $("gallery-more"),
  template: $("result-template"),
  onReuse(req) {
    form.apply(req);
    $("gen-form").scrollIntoView({ behavior: "smooth", block: "start" });
    $("prompt").focus({ preventScroll: true });
    notice(t("notice.reused"), "info");
  },
  onCode: (req, opener) => codeView.open(req, opener),
  async onUpscale(job, scale, button) {
    notice("");
    button.disabled = true;
    try {
      const body = { kind: "upscale", scale, images: job.images.map((image) => image.hash) };
      jobs.track(await api.submit(body), { reveal: true });
      refreshStatus();
    } catch (err) {
      notice(t("notice.upscale_refused", { error: err.message }));
      if (err.status === 401) openKeyPanel(true);
    } finally {
      button.disabled = false;
    }
  },
});

const jobs = new JobList({
  list: $("jobs"), empty: $("jobs-empty"), template: $("job-template"),
  onSucceeded: (job) => gallery.add(job),
  onEnded: () => { refreshStatus(); usage.load(); },
});

// --- messages --------------------------------------------------------------------------

function notice(text, level = "bad") {
  const el = $("notice");
  el.textContent = text;
  el.dataset.level = level;
  el.hidden = !text;
}

// --- the API key -----------------------------------------------------------------------

function showKeyState() {
  const saved = Boolean(apiKey.get());
  $("key-state").textContent = t(saved ? "key.saved" : "key.none");
  $("key-toggle").textContent = t(saved ? "key.toggle.saved" : "key.toggle");
  $("key-forget").disabled = !saved;
}

function openKeyPanel(open, focus = false) {
  $("key-panel").hidden = !open;
  $("key-toggle").setAttribute("aria-expanded", String(open));
  if (open && focus) $("api-key").focus();
}

$("key-toggle").addEventListener("click", () => openKeyPanel($("key-panel").hidden, true));

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("api-key").value.trim();
  $("api-key").value = "";
  if (!value) {
    $("key-state").textContent = t("key.empty");
    return;
  }
  if (!apiKey.set(value)) {
    $("key-state").textContent = t("key.no_storage");
    return;
  }
  showKeyState();
  afterKeyChange();
});

$("key-forget").addEventListener("click", () => {
  apiKey.clear();
  showKeyState();
  $("api-key").focus();
  afterKeyChange();
});

async function afterKeyChange() {
  notice("");
  if (await refreshStatus()) {
    openKeyPanel(false);
    $("key-toggle").focus();
  }
  gallery.load();
  resumeJobs();
}

// --- status ----------------------------------------------------------------------------

/** Refresh the status bar; false when the daemon refused or did not answer. */
async function refreshStatus() {
  try {
    const status = await api.status();
    authRequired = status.auth_required;
    refused = false;
    statusBar.render(status);
    usage.show(status.caller);
    keysPanel.show(status.caller);
    tokensPanel.show(status.caller, status.operator_events);
    checkPanel.show(status.caller);
    return true;
  } catch (err) {
    if (err.status === 401) {
      authRequired = true;
      if (!refused) openKeyPanel(true); // once: a person who closed it meant it
    }
    refused = err.status === 401;
    if (refused) { usage.show(null); keysPanel.show(null); tokensPanel.show(null); checkPanel.show(null); }
    statusBar.unavailable(err, await api.health().catch(() => null));
    return false;
  }
}

// --- generating ------------------------------------------------------------------------

$("gen-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  form.clearErrors();
  notice("");
  let body;
  try {
    body = form.request();
  } catch (err) {
    form.showError(err);
    return;
  }
  const button = $("generate");
  button.disabled = true;
  button.textContent = t("form.sending");
  try {
    jobs.track(await api.submit(body), { reveal: true });
    refreshStatus();
  } catch (err) {
    form.showError(err);
    if (err.status === 401) openKeyPanel(true);
  } finally {
    button.disabled = false;
    button.textContent = t("form.generate");
    usage.load();
  }
});

$("form-code").addEventListener("click", (event) => {
  try {
    codeView.open(form.request(), event.currentTarget);
  } catch (err) {
    form.showError(err);
  }
});

/** Jobs still running (from before a reload, or another tab) get their cards back. */
async function resumeJobs() {
  try {
    const recent = await api.list({ limit: 20 });
    for (const job of recent.data.reverse()) if (!isTerminal(job)) jobs.track(job);
  } catch {
    // The gallery and the status bar already say why the daemon refused.
  }
}

// --- start -----------------------------------------------------------------------------

async function start() {
  showKeyState();
  try {
    const catalog = await api.catalog();
    form.populate(catalog);
    gallery.upscaling = Boolean(catalog.upscale);
    keysPanel.populate(catalog);
  } catch (err) {
    notice(t("notice.no_catalog", { error: err.message }));
  }
  await refreshStatus();
  gallery.load();
  resumeJobs();
  setInterval(() => { if (!document.hidden) refreshStatus(); }, STATUS_EVERY);
}

start();
