// One request written for three clients: curl against the OpenAI route, the OpenAI
// Python SDK, and AUTOMATIC1111's txt2img. Pure functions of the job's settings
// (the daemon's resolved request) and where the daemon is; the key never appears:
// the code reads it from $ARTING_API_KEY. The code is code (the same in every language);
// only the notes about it are words.

import { t } from "./i18n.js";

/** The settings in the OpenAI images route's terms (Arting's extras as extra fields). */
function openaiFields(req) {
  const extras = {};
  if (req.negative_prompt) extras.negative_prompt = req.negative_prompt;
  if (req.seed >= 0) extras.seed = req.seed;
  Object.assign(extras, {
    steps: req.steps, guidance: req.guidance, sampler: req.sampler, clip_skip: req.clip_skip,
  });
  if (req.loras.length) extras.loras = req.loras.map(({ id, weight }) => ({ id, weight }));
  extras.nsfw = req.nsfw;
  return { main: { model: req.model, prompt: req.prompt, n: req.n, size: `${req.width}x${req.height}` }, extras };
}

const shellQuote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;

function curlLines(url, body, auth) {
  const lines = [`curl -s ${url}`, "-H 'Content-Type: application/json'"];
  if (auth) lines.push('-H "Authorization: Bearer $ARTING_API_KEY"');
  lines.push(`-d ${shellQuote(JSON.stringify(body, null, 2))}`);
  return lines.join(" \\\n  ");
}

export function curl(req, { base, auth }) {
  const { main, extras } = openaiFields(req);
  return curlLines(`${base}v1/images/generations`,
                   { ...main, ...extras, response_format: "url" }, auth);
}

/** A Python literal for a JSON-like value (JSON strings are valid Python strings). */
function py(value) {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number" || typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(py).join(", ")}]`;
  return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${py(v)}`).join(", ")}}`;
}

export function python(req, { base, auth }) {
  const { main, extras } = openaiFields(req);
  const args = Object.entries({ ...main, response_format: "b64_json" })
    .map(([k, v]) => `    ${k}=${py(v)},`);
  const extraLines = Object.entries(extras).map(([k, v]) => `        ${JSON.stringify(k)}: ${py(v)},`);
  return [
    "import base64",
    ...(auth ? ["import os"] : []),
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${py(`${base}v1`)}, api_key=${auth ? 'os.environ["ARTING_API_KEY"]' : '"unused"'})`,
    "result = client.images.generate(",
    ...args,
    "    extra_body={",
    ...extraLines,
    "    },",
    ")",
    "for i, image in enumerate(result.data, start=1):",
    '    with open(f"arting-{i}.png", "wb") as f:',
    "        f.write(base64.b64decode(image.b64_json))",
  ].join("\n");
}

/** A1111 writes LoRAs as prompt tags and picks the model through override_settings. */
export function a1111(req, { base, auth }) {
  const tags = req.loras.map(({ id, weight }) => `<lora:${id}:${weight}>`);
  const body = {
    prompt: [req.prompt, ...tags].join(" "),
    negative_prompt: req.negative_prompt,
    seed: req.seed >= 0 ? req.seed : -1,
    steps: req.steps,
    cfg_scale: req.guidance,
    sampler_name: req.sampler,
    width: req.width,
    height: req.height,
    batch_size: req.n,
    override_settings: { sd_model_checkpoint: req.model, CLIP_stop_at_last_layers: req.clip_skip },
  };
  const save = "import base64, json, sys\n" +
    'for i, b in enumerate(json.load(sys.stdin)["images"], start=1):\n' +
    '    open(f"arting-{i}.png", "wb").write(base64.b64decode(b))';
  return `${curlLines(`${base}sdapi/v1/txt2img`, body, auth)} \\\n  | python3 -c ${shellQuote(save)}`;
}

/** What a reader should know about these snippets for this request: its sentences. */
export function notes(kind, req, { auth }) {
  const out = [];
  if (auth) out.push("code.note.key");
  if (req.seed < 0) out.push("code.note.random_seed");
  if (req.init_image) out.push("code.note.init_image");
  if (kind === "curl") out.push("code.note.curl");
  if (kind === "python" || kind === "a1111") out.push("code.note.saves");
  if (kind === "a1111") {
    if (req.loras.length) out.push("code.note.lora_tags");
    if (req.nsfw) out.push("code.note.nsfw");
  }
  return out.map((key) => t(key));
}

export const KINDS = { curl, python, a1111 };
