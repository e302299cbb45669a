"""The ComfyUI nodes: "Arting Generate" (``ArtingGenerate``) and "Arting Upscale"
(``ArtingUpscale``).

Classic (V1) nodes with a synchronous function: ComfyUI runs nodes on its worker
thread, so blocking while the daemon works is harmless, and V1 works on every ComfyUI
since 2023. A node submits a job to the daemon and follows it over the daemon's
WebSocket (polling it every half second where there is none), updating the progress
bar and the status text and watching for Cancel, then downloads the images and
returns them as one IMAGE batch (Generate adds the generation info).

``IS_CHANGED`` is left undefined on purpose: equal inputs reuse ComfyUI's cached
result, so re-queueing an unchanged graph never pays for a second generation. A new
image needs a new seed, which the seed widget's ``control_after_generate`` provides.

The model list is Arting's built-in ids plus the other providers' models the daemon's
catalog listed after the last job (``models.py``; the list is read without asking the
daemon). ``VALIDATE_INPUTS`` takes any model name, so a workflow naming a model this
ComfyUI has not seen listed yet still runs, and the daemon judges it.
"""

from __future__ import annotations

import base64
import json
import re

from . import catalog, convert, host
from .daemon_client import DEFAULT_URL, DaemonClient, DaemonError, JobCancelled, status_line
from .models import KNOWN

POLL_INTERVAL = 0.5
JOB_TIMEOUT = 900.0
CLIENT_NAME = "comfyui"


class ArtingGenerate:
    DESCRIPTION = ("Generate images with Arting.ai through the local arting-2api daemon "
                   "(text-to-image, or image-to-image when an image is connected).")
    CATEGORY = "Arting"
    FUNCTION = "generate"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "info")
    OUTPUT_TOOLTIPS = ("The generated images, one batch.",
                       "The generation info as JSON: job id, model, seeds, size, settings.")

    _remembering = False

    @classmethod
    def INPUT_TYPES(cls):
        if not cls._remembering:        # a local file, never the network
            cls._remembering = True
            KNOWN.keep_in(host.models_file())
        return {
            "required": {
                "prompt": ("STRING", {"multiline": True, "default": "",
                                      "tooltip": "What to draw."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                               "tooltip": "What to keep out of the picture."}),
                "model": (KNOWN.names(), {
                    "default": catalog.DEFAULT_MODEL,
                    "tooltip": "The model: an Arting id, or another provider's as "
                               "provider/model. The daemon's other providers are listed "
                               "once a job has run (then reload the page)."}),
                "width": ("INT", {
                    "default": catalog.DEFAULT_WIDTH, "min": catalog.MIN_SIDE,
                    "max": catalog.MAX_SIDE, "step": catalog.SIZE_MULTIPLE,
                    "tooltip": "Ignored when an image is connected (the result takes its "
                               "size). The daemon scales sizes above 1024x1024 pixels down."}),
                "height": ("INT", {
                    "default": catalog.DEFAULT_HEIGHT, "min": catalog.MIN_SIDE,
                    "max": catalog.MAX_SIDE, "step": catalog.SIZE_MULTIPLE,
                    "tooltip": "Ignored when an image is connected (the result takes its "
                               "size)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": catalog.MAX_SEED,
                                 "control_after_generate": True,
                                 "tooltip": "The images of a batch get seed, seed+1, …"}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 150}),
                "guidance": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0, "step": 0.5,
                                       "round": 0.01, "tooltip": "CFG scale."}),
                "sampler": (list(catalog.SAMPLERS), {"default": catalog.DEFAULT_SAMPLER}),
                "clip_skip": ("INT", {"default": 2, "min": 1, "max": 12}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": catalog.MAX_IMAGES,
                                       "tooltip": "How many images to make."}),
                "loras": ("STRING", {
                    "multiline": True, "default": "",
                    "placeholder": "LoRAs, one per line as id:weight, e.g. add_detail:0.6",
                    "tooltip": "One LoRA per line (or comma-separated) as id:weight, weight "
                               f"0..2 (default {catalog.LORA_WEIGHT}). Known ids: "
                               + ", ".join(catalog.LORAS) + "."}),
                "nsfw": ("BOOLEAN", {"default": False,
                                     "tooltip": "Allow NSFW results (Arting's is_nsfw)."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Image-to-image: the picture to start from "
                                               "(the first one of a batch)."}),
                "strength": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "Image-to-image only: how much may change "
                                                  "(0 keeps the image, 1 ignores it)."}),
                "mask": ("MASK", {"tooltip": "Image-to-image only: where the picture may "
                                             "change (1 = change)."}),
                "daemon_url": ("STRING", {
                    "default": "", "placeholder": f"daemon URL (default: ARTING_DAEMON_URL "
                                                  f"or {DEFAULT_URL})",
                    "tooltip": "Where the arting-2api daemon runs; empty means the "
                               f"ARTING_DAEMON_URL environment variable, else {DEFAULT_URL}."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        """Any model name the daemon may know (the list can be older than the daemon's
        catalog): an empty one is the only mistake found here."""
        return True if isinstance(model, str) and model.strip() else "Choose a model."

    def generate(self, prompt: str, negative_prompt: str, model: str, width: int,
                 height: int, seed: int, steps: int, guidance: float, sampler: str,
                 clip_skip: int, batch_size: int, loras: str, nsfw: bool, image=None,
                 strength: float = 0.7, mask=None, daemon_url: str = "",
                 unique_id: str | None = None):
        request = {
            "prompt": prompt, "negative_prompt": negative_prompt, "model": model,
            "n": batch_size, "seed": seed, "steps": steps, "guidance": guidance,
            "sampler": sampler, "clip_skip": clip_skip, "loras": parse_loras(loras),
            "nsfw": nsfw,
        }
        if image is not None:
            request["init_image"] = _b64(convert.image_to_png(image))
            request["strength"] = strength
        else:
            request["width"], request["height"] = width, height
        if mask is not None:
            if image is None:
                raise ValueError("The mask needs an image as well: connect the image the "
                                 "mask belongs to, or disconnect the mask.")
            request["mask"] = _b64(convert.mask_to_png(mask))

        client = DaemonClient(daemon_url)
        job = _run(client, request, _Progress(unique_id))
        images = convert.pngs_to_image([client.download(i["url"]) for i in job["images"]])
        try:
            KNOWN.learn(client.catalog())   # listed at the next /object_info
        except DaemonError:
            pass
        return images, json.dumps(generation_info(job, client.base_url), indent=2)


class ArtingUpscale:
    DESCRIPTION = ("Upscale images 2× or 4× with Arting's image-enhance, through the local "
                   "arting-2api daemon.")
    CATEGORY = "Arting"
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The upscaled images, one batch.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The images to upscale (every one of the "
                                               "batch)."}),
                "scale": ("INT", {"default": 2, "min": 2, "max": 4, "step": 2,
                                  "tooltip": "2 or 4: how many times wider and taller."}),
            },
            "optional": {
                "daemon_url": ArtingGenerate.INPUT_TYPES()["optional"]["daemon_url"],
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def upscale(self, image, scale: int, daemon_url: str = "", unique_id: str | None = None):
        if scale not in (2, 4):
            raise ValueError(f"Arting upscales 2× or 4×, not {scale}×.")
        client = DaemonClient(daemon_url)
        progress = _Progress(unique_id)
        pngs = convert.image_to_pngs(image)
        # One job per max_images pictures (the daemon's, which may differ from the
        # default): a bigger batch would be refused as a whole.
        limits = client.catalog().get("limits") or {}
        per_job = int(limits.get("max_images") or catalog.MAX_IMAGES)
        out = []
        for start in range(0, len(pngs), per_job):
            chunk = pngs[start:start + per_job]
            job = _run(client, {"kind": "upscale", "scale": scale,
                                "images": [_b64(p) for p in chunk]}, progress)
            out += [client.download(i["url"]) for i in job["images"]]
        return (convert.pngs_to_image(out),)


def _run(client: DaemonClient, request: dict, progress: _Progress) -> dict:
    """One job through the daemon, with ComfyUI's progress bar and Cancel button."""
    try:
        return client.run(request, on_progress=progress, should_cancel=host.interrupted,
                          poll_interval=POLL_INTERVAL, timeout=JOB_TIMEOUT,
                          client_name=CLIENT_NAME)
    except JobCancelled:
        if host.interrupted():
            host.raise_interrupted()
        raise


class _Progress:
    """Feeds job updates to the node's progress bar (never backwards) and status text."""

    def __init__(self, node_id: str | None) -> None:
        self.node_id = node_id
        self.bar = host.progress_bar(100, node_id)
        self.value = 0
        self.text: str | None = None

    def __call__(self, job: dict) -> None:
        self.value = max(self.value, min(100, round(100 * (job.get("progress") or 0))))
        self.bar.update_absolute(self.value, 100)
        text = status_line(job)
        if text != self.text:
            self.text = text
            host.progress_text(text, self.node_id)


def parse_loras(text: str) -> list[dict]:
    """LoRAs from the widget: one per line or comma-separated, as ``id``, ``id:weight``
    or A1111's ``<lora:id:weight>``; lines starting with # are comments."""
    loras = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for item in line.split(","):
            item = re.sub(r"^<lora:(.*)>$", r"\1", item.strip())
            if not item:
                continue
            lora_id, _, weight = item.rpartition(":") if ":" in item else (item, "", "")
            try:
                value = float(weight) if weight else catalog.LORA_WEIGHT
            except ValueError:
                value = -1.0
            if not lora_id.strip() or not 0 <= value <= 2:
                raise ValueError(f"The LoRA entry {item!r} is not understood: write one per "
                                 "line as id:weight with a weight from 0 to 2, like "
                                 "add_detail:0.6.")
            loras.append({"id": lora_id.strip(), "weight": value})
    return loras


def generation_info(job: dict, daemon_url: str) -> dict:
    """What went into the images and what came out, for the node's STRING output."""
    return {"job_id": job["id"], "daemon": daemon_url, **job["request"],
            "seeds": [i["seed"] for i in job["images"]], "images": job["images"]}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


NODE_CLASS_MAPPINGS = {"ArtingGenerate": ArtingGenerate, "ArtingUpscale": ArtingUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"ArtingGenerate": "Arting Generate",
                              "ArtingUpscale": "Arting Upscale"}
