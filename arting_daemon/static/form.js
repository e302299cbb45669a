// The generation form: filled from the catalog, read into a job request, refilled
// from a past job ("use these settings again"), and showing errors next to fields.

import { t, verbatim } from "./i18n.js";
import { knowProviders } from "./providers.js";

const $ = (id) => document.getElementById(id);

const option = (value, text, selected = false) => {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = text;
  el.selected = selected;
  return el;
};

function sizeLabel(size) {
  const [w, h] = size.split("x").map(Number);
  return t(w === h ? "form.size.square" : w < h ? "form.size.portrait" : "form.size.landscape", { w, h });
}

/** The model options: grouped by provider when there are several. */
function modelChoices(catalog) {
  const one = (m) => option(m.id, m.name === m.id ? m.id : `${m.name} (${m.id})`, m.id === catalog.default_model);
  const providers = catalog.providers || [];
  if (providers.length < 2) return catalog.models.map(one);
  return providers.map((p) => {
    const group = document.createElement("optgroup");
    group.label = p.label;
    group.append(...catalog.models.filter((m) => m.provider === p.name).map(one));
    return group;
  }).filter((group) => group.children.length);
}

/** Field ids that show the daemon's errors for each request field. */
const ERROR_FIELD = { width: "size", height: "size", lora_ids: "loras", lora_weight: "loras" };
const CUSTOM = "custom";

export class GenerateForm {
  constructor(form) {
    this.form = form;
    this.catalog = null;
    this.clipSkip = null;
    this.loraCount = 0;
    $("size").addEventListener("change", () => this.showCustomSize());
    $("lora-add").addEventListener("click", () => this.addLora().querySelector("select").focus());
    $("seed-random").addEventListener("click", () => { $("seed").value = ""; $("seed").focus(); });
    for (const id of ["prompt", "negative_prompt"]) {
      $(id).addEventListener("keydown", (event) => {
        // Enter generates; Shift+Enter is a new line; typing with an IME is left alone.
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          form.requestSubmit();
        }
      });
    }
    form.addEventListener("input", (event) => clearFieldError(event.target));
  }

  /** Offer what the daemon offers, and preselect its defaults. */
  populate(catalog) {
    this.catalog = catalog;
    knowProviders(catalog.providers);
    const { defaults, limits } = catalog;
    $("model").replaceChildren(...modelChoices(catalog));
    $("sampler").replaceChildren(...catalog.samplers.map(
      (s) => option(s, s, s === defaults.sampler)));
    const sizes = catalog.sizes.includes(catalog.default_size)
      ? catalog.sizes : [catalog.default_size, ...catalog.sizes];
    $("size").replaceChildren(...sizes.map((s) => option(s, sizeLabel(s), s === catalog.default_size)),
                              option(CUSTOM, t("form.size.custom")));
    for (const id of ["width", "height"]) {
      Object.assign($(id), { min: limits.min_side, max: limits.max_side, step: limits.size_multiple });
    }
    const [w, h] = catalog.default_size.split("x");
    $("width").value = w;
    $("height").value = h;
    $("size-help").textContent = t("form.size.help", {
      min: limits.min_side, max: limits.max_side, multiple: limits.size_multiple });
    $("n").max = limits.max_images;
    $("n").value = 1;
    $("steps").value = defaults.steps;
    $("guidance").value = defaults.guidance;
    $("nsfw").checked = defaults.nsfw;
    $("prompt").maxLength = limits.max_prompt_chars;
    this.clipSkip = defaults.clip_skip;
    this.showCustomSize();
  }

  showCustomSize() {
    $("custom-size").hidden = $("size").value !== CUSTOM;
  }

  addLora(lora = null) {
    const n = ++this.loraCount;
    const item = document.createElement("li");
    item.className = "lora";
    const pick = verbatim("", "select");
    pick.id = `lora-${n}-id`;
    pick.replaceChildren(...this.catalog.loras.map(
      (l) => option(l.id, l.name === l.id ? l.id : `${l.name} (${l.id})`)));
    if (lora && !this.catalog.loras.some((l) => l.id === lora.id)) pick.append(option(lora.id, lora.id));
    if (lora) pick.value = lora.id;
    const weight = Object.assign(document.createElement("input"), {
      id: `lora-${n}-weight`, type: "number", min: 0, max: 2, step: 0.05, inputMode: "decimal",
      value: lora ? lora.weight : 0.7,
    });
    const remove = Object.assign(document.createElement("button"), {
      type: "button", className: "button small", textContent: t("form.lora.remove"),
    });
    const label = (target, text, hidden) => Object.assign(document.createElement("label"), {
      htmlFor: target.id, textContent: text, className: hidden ? "visually-hidden" : "",
    });
    item.append(label(pick, t("form.lora.label", { i: n }), true), pick,
                label(weight, t("form.lora.weight"), false), weight, remove);
    remove.addEventListener("click", () => {
      item.remove();
      this.renumberLoras();
      $("lora-add").focus();
    });
    $("lora-list").append(item);
    this.renumberLoras();
    return item;
  }

  renumberLoras() {
    [...$("lora-list").children].forEach((item, i) => {
      item.querySelector("label").textContent = t("form.lora.label", { i: i + 1 });
      item.querySelector("button").setAttribute("aria-label", t("form.lora.remove_nth", { i: i + 1 }));
    });
  }

  /** The form as a job request, or throws an Error naming the field to fix. */
  request() {
    const prompt = $("prompt").value.trim();
    if (!prompt) throw fieldError("prompt", t("form.error.prompt"));
    const number = (id, what, { integer = true, optional = false } = {}) => {
      const raw = $(id).value.trim();
      if (raw === "" && optional) return null;
      const value = Number(raw);
      if (raw === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
        throw fieldError(id, t(integer ? "form.error.whole_number" : "form.error.number", { what }));
      }
      return value;
    };
    let width, height;
    if ($("size").value === CUSTOM) {
      width = number("width", t("form.width"));
      height = number("height", t("form.height"));
    } else {
      [width, height] = $("size").value.split("x").map(Number);
    }
    const loras = [...$("lora-list").children].map((item, i) => ({
      id: item.querySelector("select").value,
      weight: number(item.querySelector("input").id, t("form.what.lora_weight", { i: i + 1 }), { integer: false }),
    }));
    const seed = number("seed", t("form.what.seed"), { optional: true });
    return {
      prompt,
      negative_prompt: $("negative_prompt").value.trim(),
      model: $("model").value,
      width, height,
      n: number("n", t("form.what.n")),
      seed: seed === null ? -1 : seed,
      steps: number("steps", t("form.what.steps")),
      guidance: number("guidance", t("form.what.guidance"), { integer: false }),
      sampler: $("sampler").value,
      clip_skip: this.clipSkip,
      loras,
      nsfw: $("nsfw").checked,
    };
  }

  /** Fill the form with a past job's settings (its seed too, so it can be redone). */
  apply(req) {
    $("prompt").value = req.prompt;
    $("negative_prompt").value = req.negative_prompt || "";
    if (![...$("model").options].some((o) => o.value === req.model)) $("model").append(option(req.model, req.model));
    $("model").value = req.model;
    const size = `${req.width}x${req.height}`;
    const preset = [...$("size").options].some((o) => o.value === size);
    $("size").value = preset ? size : CUSTOM;
    $("width").value = req.width;
    $("height").value = req.height;
    this.showCustomSize();
    $("n").value = req.n;
    $("seed").value = req.seed;
    $("steps").value = req.steps;
    $("guidance").value = req.guidance;
    $("sampler").value = req.sampler;
    $("nsfw").checked = req.nsfw;
    this.clipSkip = req.clip_skip;
    $("lora-list").replaceChildren();
    for (const lora of req.loras) this.addLora(lora);
    this.clearErrors();
  }

  /** Show an error next to the field it concerns (or above the button). */
  showError(err) {
    const param = (err.param || "").split(".")[0];
    const id = ERROR_FIELD[param] || param;
    const slot = id && $(`${id}-error`);
    if (slot) {
      slot.textContent = err.message;
      slot.hidden = false;
      const field = err.field ? $(err.field) : $(id) || slot.closest("fieldset")?.querySelector("select, input");
      field?.setAttribute("aria-invalid", "true");
      field?.focus();
    } else {
      $("form-error").textContent = err.message;
      $("form-error").hidden = false;
    }
  }

  clearErrors() {
    clearFieldErrors(this.form);
  }
}

/** A field's error goes as soon as the field is edited. */
export function clearFieldError(field) {
  field.removeAttribute("aria-invalid");
  const slot = field.closest(".field")?.querySelector(".field-error");
  if (slot) slot.hidden = true;
}

export function clearFieldErrors(root) {
  for (const el of root.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of root.querySelectorAll(".field-error, .form-error")) el.hidden = true;
}

function fieldError(field, message) {
  const param = field.startsWith("lora-") ? "loras" : field;
  return Object.assign(new Error(message), { param, field });
}
