// One request written for three clients: curl against the OpenAI route, the OpenAI
// Python SDK, and AUTOMATIC1111's txt2img. Pure functions of the job's settings
// (the daemon's resolved request) and where the daemon is; the key never appears:
// the code reads it from $ARTING_API_KEY.

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

/** What a reader should know about these snippets for this request. */
export function notes(kind, req, { auth }) {
  const out = [];
  if (auth) out.push("Set ARTING_API_KEY to your key first: the page never writes the key into code.");
  if (req.seed < 0) out.push("The seed is random: each run gives new images.");
  if (req.init_image) out.push("This result started from an init image, which the code leaves out.");
  if (kind === "curl") out.push("Prints JSON with links to the images, served by this daemon.");
  if (kind === "python" || kind === "a1111") out.push("Saves the images as arting-1.png, arting-2.png, …");
  if (kind === "a1111") {
    if (req.loras.length) out.push("LoRAs are written as A1111 prompt tags, <lora:id:weight>.");
    if (req.nsfw) out.push("A1111 has no NSFW switch: the daemon's default (default_nsfw) applies.");
  }
  return out.join(" ");
}

export const KINDS = { curl, python, a1111 };
