"""Stability AI's REST API: what is sent, and what its answers mean.

* A generation is ``POST /v2beta/stable-image/generate/{core|ultra|sd3}`` as
  ``multipart/form-data``: ``prompt``, ``negative_prompt`` (not for the turbo model),
  ``aspect_ratio`` (the nearest of Stability's to the request's size; none when the
  request named no size, or with an init image), ``seed``, ``output_format``,
  ``style_preset``; for ``sd3`` the ``model`` and ``mode``; image-to-image adds
  ``image`` and ``strength``. One image per call.
* Answers come as JSON (``{image, finish_reason, seed}``; an upscale's result
  ``{result, ...}``) or, if a server prefers, as the image's bytes with ``finish-reason``
  and ``seed`` headers: both are read. ``CONTENT_FILTERED`` is a refused prompt.
* Errors are ``{id, name, errors: [...]}`` (v1: ``{id, name, message}``), read by their
  ``name`` first and then by their HTTP status.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ... import logs
from ...errors import (ArtingError, BadUpstreamResponse, ContentRefused, JobFailed,
                       UpstreamAuthError, UpstreamInvalid, UpstreamRateLimited,
                       UpstreamRejected, UpstreamServerError, UpstreamTimeout)
from ...generation import Generation
from ...retry import retry_after
from ..remote import image_bytes
from .settings import StabilitySettings

GENERATE = "/v2beta/stable-image/generate/"
UPSCALE = "/v2beta/stable-image/upscale/"
RESULTS = "/v2beta/results/"
BALANCE = "/v1/user/balance"
ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
#: The largest seed Stability takes.
MAX_SEED = 4294967294
#: Seconds to wait after a 429 without ``Retry-After``: its window is 10 s (LIKELY).
RATE_WINDOW = 10.0
#: Names in an error that mean the prompt or picture was refused.
MODERATION = ("content_moderation", "moderation", "flagged", "content_filtered")


def route(model: str) -> str:
    """The generate route of a model, as LiteLLM picks it (by what its id holds):
    ``ultra`` and ``core`` (``stable-image-ultra`` too), every other (``sd3.5-large``
    ...) at ``sd3``."""
    key = model.lower()
    return next((r for r in ("ultra", "core") if r in key), "sd3")


def aspect_ratio(width: int, height: int) -> str:
    """The nearest of Stability's aspect ratios to a size (512×768 → 2:3)."""
    def distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log((w / h) / (width / height)))
    return min(ASPECT_RATIOS, key=distance)


def multipart(fields: Mapping[str, Any], files: Mapping[str, bytes] | None = None
              ) -> aiohttp.MultipartWriter:
    """A ``multipart/form-data`` body, files or not (Stability takes nothing else)."""
    writer = aiohttp.MultipartWriter("form-data")
    for name, value in fields.items():
        part = writer.append(str(value))
        part.set_content_disposition("form-data", name=name)
    for name, data in (files or {}).items():
        part = writer.append(data, {"Content-Type": "image/png"})
        part.set_content_disposition("form-data", name=name, filename=f"{name}.png")
    return writer


def generation_fields(gen: Generation, options: StabilitySettings, seed: int
                      ) -> dict[str, Any]:
    """The fields of one image's call (the init image goes as the file ``image``)."""
    model = gen.model.lower()
    fields: dict[str, Any] = {"prompt": gen.prompt, "output_format": options.output_format,
                              "seed": seed % (MAX_SEED + 1)}
    if gen.negative_prompt and "turbo" not in model:
        fields["negative_prompt"] = gen.negative_prompt
    if options.style_preset:
        fields["style_preset"] = options.style_preset
    if gen.is_img2img:
        fields["strength"] = gen.strength if gen.strength is not None else 0.7
    elif not gen.auto_size:
        fields["aspect_ratio"] = aspect_ratio(gen.width, gen.height)
    if route(model) == "sd3":
        if model.startswith("sd3"):
            fields["model"] = model
        fields["mode"] = "image-to-image" if gen.is_img2img else "text-to-image"
    return fields


def upscale_fields(options: StabilitySettings, seed: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"output_format": options.output_format}
    if options.upscale in ("conservative", "creative"):
        fields["prompt"] = options.upscale_prompt
        if seed >= 0:
            fields["seed"] = seed % (MAX_SEED + 1)
        if options.creativity is not None:
            fields["creativity"] = options.creativity
    return fields


# --- answers --------------------------------------------------------------------------

@dataclass(frozen=True)
class Made:
    image: bytes
    seed: int | None


def made(label: str, status: int, headers: Mapping[str, str], body: bytes,
         advice: str = "") -> Made:
    """An image answer (JSON or bytes), or the error it means (``advice``: where its
    credentials are set)."""
    kind = headers.get("Content-Type", "").split(";")[0].strip().lower()
    data: bytes | str
    if status == 200 and kind.startswith("image/"):
        finish, seed, data = headers.get("finish-reason", "SUCCESS"), headers.get("seed"), body
    else:
        payload = _json(body)
        if status != 200:
            raise error(label, status, headers, payload, advice)
        if not isinstance(payload, dict):
            raise BadUpstreamResponse(f"{label}'s answer is neither an image nor JSON.")
        found = payload.get("image", payload.get("result"))
        finish, seed = payload.get("finish_reason", "SUCCESS"), payload.get("seed")
        if not isinstance(found, str):
            raise BadUpstreamResponse(f"{label}'s answer holds no image.", retryable=False)
        data = found
    _finished(label, str(finish or "SUCCESS"))
    try:
        number = int(seed) if seed is not None and str(seed).strip() else None
    except ValueError:
        number = None
    return Made(image_bytes(data, label), number)


def _finished(label: str, finish: str) -> None:
    if finish.upper() == "CONTENT_FILTERED":
        raise ContentRefused(f"{label}'s content filter blurred the image "
                             "(finish_reason CONTENT_FILTERED).")
    if finish.upper() != "SUCCESS":
        raise JobFailed(f"{label} did not finish the image (finish_reason {finish[:40]}).")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None


def accepted_id(label: str, status: int, headers: Mapping[str, str], body: bytes,
                advice: str = "") -> str:
    """The generation id an asynchronous call answers (200 or 202 ``{id}``)."""
    payload = _json(body)
    if status not in (200, 202):
        raise error(label, status, headers, payload, advice)
    found = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(found, str) or not found:
        raise BadUpstreamResponse(f"{label} took the upscale but named no id for it.",
                                  retryable=False)
    return found


def credits(payload: Any) -> float | None:
    value = payload.get("credits") if isinstance(payload, dict) else None
    return float(value) if isinstance(value, (int, float)) and \
        not isinstance(value, bool) else None


def error(label: str, status: int, headers: Mapping[str, str], payload: Any,
          advice: str = "") -> ArtingError:
    """An error answer in the taxonomy: by its ``name``, then its status (``advice``: where
    the credentials are set, for a refusal)."""
    name = str(payload.get("name") or "") if isinstance(payload, dict) else ""
    words = _words(payload)
    quoted = f": {words}" + ("" if words.endswith((".", "!", "?")) else ".") if words else "."
    named = f"{name} " if name else ""
    advice = f"{advice[:1].upper()}{advice[1:]}, then restart the daemon." if advice else ""
    if status == 401 or name == "unauthorized":
        return UpstreamAuthError(f"{label} refused the API key (HTTP {status}){quoted} "
                                 f"{advice}".rstrip())
    if any(m in name.lower() for m in MODERATION) or (
            status == 403 and "moderat" in words.lower()):
        return ContentRefused(f"{label} refused the content (HTTP {status} {named}){quoted}"
                              .replace(" )", ")"), upstream_code=status)
    if status == 402 or name == "payment_required":
        return UpstreamRejected(f"{label}'s account is out of credits (HTTP {status}){quoted} "
                                "Buy more at platform.stability.ai.", upstream_code=402)
    if status == 403:
        return UpstreamAuthError(f"{label} refused the request (HTTP 403){quoted} {advice}"
                                 .rstrip())
    if status == 404:
        return UpstreamRejected(f"{label} has no such route or result (HTTP 404){quoted}",
                                upstream_code=404)
    if status == 429:
        asked = retry_after(headers.get("Retry-After"))
        return UpstreamRateLimited(f"{label} is rate-limiting (HTTP 429){quoted}",
                                   retry_after=asked or RATE_WINDOW)
    if status == 504:
        return UpstreamTimeout(f"{label} timed out (HTTP 504){quoted}")
    if status >= 500:
        return UpstreamServerError(f"{label} failed (HTTP {status}){quoted}")
    if status == 413:
        return UpstreamInvalid(f"{label} found the request too large (HTTP 413; at most "
                               f"10 MiB){quoted}", upstream_code=413)
    return UpstreamInvalid(f"{label} found the request invalid (HTTP {status} "
                           f"{named}){quoted}".replace(" )", ")"), upstream_code=status)


def _words(payload: Any) -> str:
    """Stability's own words (``errors`` joined, or v1's ``message``), masked, short."""
    if not isinstance(payload, dict):
        return ""
    found = payload.get("errors")
    if isinstance(found, list):
        text = "; ".join(str(e) for e in found if e)
    else:
        text = str(payload.get("message") or "")
    return logs.redact(" ".join(text.split()))[:300]

