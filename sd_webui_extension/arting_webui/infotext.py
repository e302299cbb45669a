"""Infotext in A1111's format, so PNG Info, "Send to img2img/inpaint" and pasting the
text into the prompt box all work with Arting's images:

    a lighthouse at dawn
    Negative prompt: blurry
    Steps: 25, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 512x768, Model: oneFORALLAnime

Values holding ``,``, ``:`` or a newline are JSON-quoted, as the host quotes them.
The ``Arting …`` keys carry our own controls; ``paste_fields`` maps them back.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .choices import DAEMON_DEFAULT, DEFAULT_LORA_WEIGHT, NO_LORA, NO_UPSCALE

LORAS_KEY = "Arting LoRAs"
NSFW_KEY = "Arting NSFW"
UPSCALE_KEY = "Arting upscale"
JOB_KEY = "Arting job"


def quote(value: Any) -> str:
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def build(prompt: str, negative: str, params: dict[str, Any]) -> str:
    line = ", ".join(f"{key}: {quote(value)}" for key, value in params.items()
                     if value is not None)
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{line}".strip()


def params(request: dict, image: dict, job_id: str) -> dict[str, Any]:
    """The key: value pairs of one image, from what the daemon actually used. ``Size``
    is the generated size; an upscale adds how much (``Arting upscale``, or Hires. fix's
    own keys), as A1111's Hires. fix does."""
    loras = ", ".join(f"{lo['id']}:{lo['weight']:g}" for lo in request.get("loras") or ())
    strength = request.get("strength")
    return {
        "Steps": request.get("steps"),
        "Sampler": request.get("sampler"),
        "CFG scale": request.get("guidance"),
        "Seed": image["seed"],
        "Size": f"{image['width']}x{image['height']}",
        "Model": request.get("model"),
        "Denoising strength": strength,
        "Clip skip": request.get("clip_skip"),
        LORAS_KEY: loras or None,
        NSFW_KEY: "True" if request.get("nsfw") else None,
        JOB_KEY: job_id,
    }


def _ours(fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """Only infotexts we wrote set our controls; others leave them as they are."""
    return lambda fields: fn(fields) if JOB_KEY in fields else None


def _lora(fields: dict, slot: int) -> tuple[str, float]:
    entries = [e.strip() for e in fields.get(LORAS_KEY, "").split(",") if e.strip()]
    if slot >= len(entries):
        return NO_LORA, DEFAULT_LORA_WEIGHT
    lora_id, _, weight = entries[slot].rpartition(":")
    try:
        return lora_id, float(weight)
    except ValueError:
        return entries[slot], DEFAULT_LORA_WEIGHT


def paste_fields(model: Any, nsfw: Any, loras: list[tuple[Any, Any]],
                 upscale: Any) -> list[tuple]:
    """``Script.infotext_fields``: which parsed key sets which of our controls."""
    fields: list[tuple] = [
        (model, _ours(lambda f: f.get("Model") or DAEMON_DEFAULT)),
        (nsfw, _ours(lambda f: f.get(NSFW_KEY) == "True")),
        (upscale, _ours(lambda f: f"{f[UPSCALE_KEY]}x" if f.get(UPSCALE_KEY) else NO_UPSCALE)),
    ]
    for slot, (lora_id, weight) in enumerate(loras):
        fields.append((lora_id, _ours(lambda f, s=slot: _lora(f, s)[0])))
        fields.append((weight, _ours(lambda f, s=slot: _lora(f, s)[1])))
    return fields
