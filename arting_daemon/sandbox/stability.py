"""A Stability AI emulator: a real HTTP server speaking the v2beta REST API.

It follows the project's ``provider_protocols.md`` §3:

* ``POST /v2beta/stable-image/generate/{core,ultra,sd3}``: ``multipart/form-data``
  only, each route's fields checked (an unknown one is refused, as ``strict`` says),
  ``prompt`` required, the enums (``aspect_ratio``, ``output_format``, ``style_preset``,
  ``model``, ``mode``) and ranges enforced; image-to-image with ``image`` + ``strength``
  (not at ``core``). ``Accept: application/json`` answers ``{image, finish_reason, seed}``,
  any other the image's bytes with ``finish-reason`` and ``seed`` headers.
* ``upscale/fast`` (4×, input at most 1 MP) and ``upscale/conservative`` answer at once;
  ``upscale/creative`` answers ``{id}`` and ``GET /v2beta/results/{id}`` answers 202
  ``{id, status: "in-progress"}`` until ``upscale_time`` has passed, then the image.
* Errors are ``{id, name, errors}``: 400 ``bad_request``, 401 ``unauthorized``, 402
  ``payment_required`` (the credits, spent per image at ``prices``, are too few), 403
  ``content_moderation`` (a ``moderation_words`` prompt), 404 ``not_found``, 413
  ``payload_too_large`` (over ``max_body``), 429 (``rate_limit`` requests per
  ``rate_window`` seconds per key). A ``filter_words`` prompt is answered with a
  blocked picture and ``CONTENT_FILTERED`` (and not charged).
* ``GET /v1/user/balance`` ``{credits}``, ``GET /v1/user/account``.

Faults (``add_fault``): ``http_error`` (that status, its error body), ``reset``, ``slow``,
``filtered`` (the answer is ``CONTENT_FILTERED``), ``garbled`` (not JSON).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aiohttp import web
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ..providers.stability.settings import MODELS, StylePreset
from ..clock import SYSTEM, Clock
from .emulator import FAULT, Emulator, Handler, RateLimiter
from .models import FaultSpec
from .render import Picture, PngCache, probe_image

ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
SD3_MODELS = tuple(m for m in MODELS if m.startswith("sd3"))
_COMMON = {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format",
           "style_preset"}
#: The fields each route takes.
FIELDS = {
    "core": _COMMON,
    "ultra": _COMMON | {"image", "strength"},
    "sd3": _COMMON | {"image", "strength", "mode", "model", "cfg_scale"},
    "fast": {"image", "output_format"},
    "conservative": {"image", "prompt", "negative_prompt", "seed", "creativity",
                     "output_format"},
    "creative": {"image", "prompt", "negative_prompt", "seed", "creativity", "style_preset",
                 "output_format"},
}
NAMES = {400: "bad_request", 401: "unauthorized", 402: "payment_required",
         403: "content_moderation", 404: "not_found", 413: "payload_too_large",
         422: "invalid_request", 429: "rate_limit_exceeded", 500: "internal_error"}


class StabilityConfig(BaseModel):
    """How the emulated Stability AI behaves."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: Keys it accepts (``Bearer <key>`` or the bare key); empty: any key.
    api_keys: list[str] = Field(default_factory=lambda: ["sk-sandbox"])
    credits: float = Field(1000.0, ge=0)
    #: Credits per image (Stability's prices of mid-2026; upscales: the emulator's own).
    prices: dict[str, float] = Field(default_factory=lambda: {
        "core": 3, "ultra": 8, "sd3.5-large": 6.5, "sd3.5-large-turbo": 4,
        "sd3.5-medium": 3.5, "fast": 2, "conservative": 40, "creative": 60})
    rate_limit: int = Field(150, ge=1)
    rate_window: float = Field(10.0, gt=0)
    moderation_words: list[str] = Field(default_factory=lambda: ["forbidden"])
    filter_words: list[str] = Field(default_factory=lambda: ["blurme"])
    #: The area of a 1:1 image (``core``: 2.25 times it, as 1536² to 1024²).
    pixels: int = Field(1024 * 1024, ge=64 * 64)
    max_body: int = Field(10 * 2**20, ge=1)
    #: Seconds a creative upscale takes, and how its POST answers (200, or 202).
    upscale_time: float = Field(1.0, ge=0)
    creative_status: Literal[200, 202] = 200
    #: Refuse fields a route does not take (as a check that nothing extra is sent).
    strict: bool = True


@dataclass
class Result:
    """A creative upscale on its way."""

    id: str
    ready_at: float
    image: bytes
    seed: int
    accept: str
    key: str | None


class StabilityEmulator(Emulator):
    NAME = "Stability AI"
    ROUTES = ("generate", "upscale", "results", "balance", "account")
    FAULT_KINDS = ("http_error", "reset", "slow", "filtered", "garbled", "oversized")

    def __init__(self, config: StabilityConfig | None = None, *, clock: Clock = SYSTEM,
                 **overrides: Any) -> None:
        self.config = StabilityConfig.model_validate(
            {**(config or StabilityConfig()).model_dump(), **overrides})
        self.credits = self.config.credits
        self.results: dict[str, Result] = {}
        self.images = PngCache()
        self._limiter = RateLimiter()
        super().__init__(clock)

    def configure(self, **changes: Any) -> None:
        self.config = StabilityConfig.model_validate({**self.config.model_dump(), **changes})
        if "credits" in changes:
            self.credits = self.config.credits

    def routes(self, app: web.Application) -> None:
        for name, method, path, handler in [
                ("generate", "POST", "/v2beta/stable-image/generate/{model}", self._generate),
                ("upscale", "POST", "/v2beta/stable-image/upscale/{mode}", self._upscale),
                ("results", "GET", "/v2beta/results/{id}", self._result),
                ("balance", "GET", "/v1/user/balance", self._balance),
                ("account", "GET", "/v1/user/account", self._account)]:
            self.route(app, name, method, path, self._guarded(handler))

    def _guarded(self, handler: Handler) -> Handler:
        async def handle(request: web.Request, body: Any) -> web.StreamResponse:
            if (request.content_length or 0) > self.config.max_body:
                return error(413, "Your request was larger than 10MiB.")
            key = _key(request)
            if key is None or (self.config.api_keys and key not in self.config.api_keys):
                return error(401, "authorization: missing or invalid API key")
            wait = self._limiter.retry_after(key, self.config.rate_limit,
                                             self.config.rate_window, self.clock.time())
            if wait is not None:
                return error(429, f"You have exceeded the rate limit of "
                                  f"{self.config.rate_limit} requests within a "
                                  f"{self.config.rate_window:g} second period.",
                             headers={"Retry-After": f"{math.ceil(wait)}"})
            try:
                return await handler(request, body)
            except Refusal as refusal:
                return error(refusal.status, *refusal.errors)
        return handle

    def fault_answer(self, fault: FaultSpec, request: web.Request
                     ) -> web.StreamResponse | None:
        if fault.kind == "http_error":
            status = fault.status or 500
            headers = {"Retry-After": f"{fault.retry_after:g}"} \
                if fault.retry_after is not None else None
            return error(status, fault.message or NAMES.get(status, "error"), headers=headers)
        if fault.kind == "garbled":
            return web.Response(status=200, text="<html>upstream hiccup</html>",
                                content_type="text/html")
        return None

    # --- generation ---------------------------------------------------------------------

    async def _generate(self, request: web.Request, body: Any) -> web.StreamResponse:
        route = request.match_info["model"]
        if route not in ("core", "ultra", "sd3"):
            raise Refusal(404, f"no such route: generate/{route}")
        fields = self._form(request, body, route)
        prompt = _text(fields, "prompt", required=True)
        _text(fields, "negative_prompt")
        model = route if route != "sd3" else _choice(fields, "model", SD3_MODELS,
                                                     "sd3.5-large")
        if model.endswith("turbo") and fields.get("negative_prompt") and self.config.strict:
            raise Refusal(400, f"negative_prompt: not taken by {model}")
        mode = _choice(fields, "mode", ("text-to-image", "image-to-image"), "text-to-image") \
            if route == "sd3" else ("image-to-image" if "image" in fields else "text-to-image")
        ratio = _choice(fields, "aspect_ratio", ASPECT_RATIOS, "1:1")
        _choice(fields, "output_format", ("png", "jpeg", "webp"), "png")
        _choice(fields, "style_preset", get_args(StylePreset), None)
        seed = _seed(fields)
        init, strength = None, 1.0
        if mode == "image-to-image":
            init = await _image(fields, "image")
            strength = _number(fields, "strength", 0, 1, required=True)
        elif "image" in fields:
            raise Refusal(400, "image: only with mode image-to-image")
        self._moderate(prompt)
        filtered = self._filtered(request, prompt)
        if not filtered:
            self._charge(model)
        scale = 1.5 if route == "core" else 1.0
        if init is not None:
            with Image.open(io.BytesIO(init)) as probe:
                width, height = _sized(probe.width / probe.height, self.config.pixels * scale ** 2)
        else:
            w, h = (int(x) for x in ratio.split(":"))
            width, height = _sized(w / h, self.config.pixels * scale ** 2)
        png = await self.images.png(Picture(prompt=prompt, seed=seed, model=model, width=width,
                                            height=height, init_image=init,
                                            strength=strength, blocked=filtered))
        return await self._answer(request, png, fields, seed, filtered)

    def _form(self, request: web.Request, body: Any, route: str) -> dict[str, Any]:
        if not request.content_type.startswith("multipart/form-data"):
            raise Refusal(400, "content-type: must be multipart/form-data")
        fields = dict(body) if isinstance(body, dict) else {}
        unknown = sorted(set(fields) - FIELDS[route])
        if unknown and self.config.strict:
            raise Refusal(400, *(f"{name}: unknown field" for name in unknown))
        return fields

    def _moderate(self, prompt: str) -> None:
        lowered = prompt.lower()
        if any(w.lower() in lowered for w in self.config.moderation_words):
            raise Refusal(403, "Your request was flagged by our content moderation system, "
                               "as a result your request was denied and you were not charged.")

    def _filtered(self, request: web.Request, prompt: str) -> bool:
        fault = request.get(FAULT)
        lowered = prompt.lower()
        return (fault is not None and fault.kind == "filtered") or any(
            w.lower() in lowered for w in self.config.filter_words)

    def _charge(self, what: str) -> None:
        price = self.config.prices.get(what, 0)
        if self.credits < price:
            raise Refusal(402, "You lack sufficient credits to make this request. Please "
                               "purchase more credits at https://platform.stability.ai/"
                               "account/credits and try again.")
        self.credits -= price

    async def _answer(self, request: web.Request, png: bytes, fields: dict[str, Any],
                      seed: int, filtered: bool) -> web.Response:
        fmt = str(fields.get("output_format") or "png")
        data = png if fmt == "png" else await asyncio.to_thread(_convert, png, fmt)
        finish = "CONTENT_FILTERED" if filtered else "SUCCESS"
        if "application/json" in request.headers.get("Accept", ""):
            return web.Response(
                text=json.dumps({"image": base64.b64encode(data).decode(),
                                 "finish_reason": finish, "seed": seed}),
                content_type="application/json")
        return web.Response(body=data, content_type=f"image/{fmt}",
                            headers={"finish-reason": finish, "seed": str(seed)})

    # --- upscales -----------------------------------------------------------------------

    async def _upscale(self, request: web.Request, body: Any) -> web.StreamResponse:
        mode = request.match_info["mode"]
        if mode not in ("fast", "conservative", "creative"):
            raise Refusal(404, f"no such route: upscale/{mode}")
        fields = self._form(request, body, mode)
        source = await _image(fields, "image")
        _choice(fields, "output_format", ("png", "jpeg", "webp"), "png")
        with Image.open(io.BytesIO(source)) as probe:
            width, height = probe.size
        if mode == "fast" and width * height > 1024 * 1024:
            raise Refusal(400, "image: must be at most 1 megapixel for a fast upscale")
        seed = 0
        if mode != "fast":
            prompt = _text(fields, "prompt", required=True)
            self._moderate(prompt)
            _number(fields, "creativity", 0, 0.5)
            seed = _seed(fields)
        self._charge(mode)
        factor = 4.0 if mode == "fast" else min(4.0, math.sqrt(4 * 2**20 / (width * height)))
        made = await asyncio.to_thread(_enlarge, source, factor)
        if mode != "creative":
            return await self._answer(request, made, fields, seed, False)
        result = Result(id=uuid.uuid4().hex + uuid.uuid4().hex, image=made, seed=seed,
                        ready_at=self.clock.time() + self.config.upscale_time,
                        accept=str(fields.get("output_format") or "png"), key=_key(request))
        self.results[result.id] = result
        return web.json_response({"id": result.id}, status=self.config.creative_status)

    async def _result(self, request: web.Request, body: Any) -> web.StreamResponse:
        result = self.results.get(request.match_info["id"])
        if result is None or result.key != _key(request):
            raise Refusal(404, f"id: no generation {request.match_info['id']!r} (results "
                               "are kept for 24 hours)")
        if self.clock.time() < result.ready_at:
            return web.json_response({"id": result.id, "status": "in-progress"}, status=202)
        return await self._answer(request, result.image, {"output_format": result.accept},
                                  result.seed, False)

    # --- the account --------------------------------------------------------------------

    async def _balance(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response({"credits": self.credits})

    async def _account(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response({
            "id": "user-sandbox", "email": "sandbox@example.com", "profile_picture": "",
            "organizations": [{"id": "org-sandbox", "name": "Sandbox", "role": "OWNER",
                               "is_default": True}]})


class Refusal(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(errors[0] if errors else "")
        self.status = status
        self.errors = errors


def error(status: int, *errors: str, headers: dict[str, str] | None = None) -> web.Response:
    """Stability's error body: ``{id, name, errors}``."""
    return web.json_response({"id": uuid.uuid4().hex, "name": NAMES.get(status, "error"),
                              "errors": list(errors)}, status=status, headers=headers)


def _key(request: web.Request) -> str | None:
    sent = request.headers.get("Authorization", "").strip()
    key = sent.removeprefix("Bearer ").strip()
    return key or None


def _text(fields: dict[str, Any], name: str, required: bool = False) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise Refusal(400, f"{name}: is required")
        return ""
    if not isinstance(value, str) or len(value) > 10000:
        raise Refusal(400, f"{name}: must be text of at most 10000 characters")
    return value


def _choice(fields: dict[str, Any], name: str, allowed: tuple[str, ...],
            default: str | None) -> str:
    value = fields.get(name, default)
    if value is not None and value not in allowed:
        raise Refusal(400, f"{name}: must be one of {', '.join(allowed)}")
    return value or ""


def _number(fields: dict[str, Any], name: str, low: float, high: float,
            required: bool = False) -> float:
    if name not in fields:
        if required:
            raise Refusal(400, f"{name}: is required")
        return low
    try:
        value = float(fields[name])
    except (TypeError, ValueError):
        raise Refusal(400, f"{name}: must be a number") from None
    if not low <= value <= high:
        raise Refusal(400, f"{name}: must be between {low:g} and {high:g}")
    return value


def _seed(fields: dict[str, Any]) -> int:
    seed = int(_number(fields, "seed", 0, 4294967294))
    return seed or int(uuid.uuid4().int % 4294967294) + 1


async def _image(fields: dict[str, Any], name: str) -> bytes:
    data = fields.get(name)
    if not isinstance(data, bytes):
        raise Refusal(400, f"{name}: is required (a file)")
    if await asyncio.to_thread(probe_image, data) is None:
        raise Refusal(400, f"{name}: is not an image")
    return data


def _sized(ratio: float, pixels: float) -> tuple[int, int]:
    """Width and height of ``pixels`` area in ``ratio``, in multiples of 64."""
    return (max(64, round(math.sqrt(pixels * ratio) / 64) * 64),
            max(64, round(math.sqrt(pixels / ratio) / 64) * 64))


def _enlarge(data: bytes, factor: float) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        out = io.BytesIO()
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(out, "PNG")
    return out.getvalue()


def _convert(png: bytes, fmt: str) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG" if fmt == "jpeg" else "WEBP")
    return out.getvalue()
