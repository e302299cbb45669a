"""Any server with OpenAI's Images API as a provider (``kind = "openai"``).

* ``POST {base_url}/images/generations`` (JSON) and, where the server has them and
  ``img2img = true``, ``POST {base_url}/images/edits`` (multipart, the init image as
  ``image``): ``model``, ``prompt``, ``n``, ``size`` and ``response_format``. With
  ``extras = true`` Arting's own fields go along (negative prompt, seed, steps,
  guidance, sampler, clip skip, LoRAs, NSFW, strength), as another arting-2api daemon
  takes them; strict servers refuse unknown fields, so they are off by default.
* OpenAI's own models are sent only what they take (``MODEL_RULES``): one of their
  sizes (the nearest in shape), no ``response_format`` for the GPT image models (they
  answer base64 only), and as many calls as their ``n`` needs (DALL·E 3 makes one
  image per call). A request that named no size is sent none: the server's default.
* Answers in ``b64_json`` or ``url`` (downloaded at once, from the server's own host
  or the provider's ``image_hosts``).
* ``GET {base_url}/models``: the catalogue, without the OpenAI names clients hard-code
  (here they stand for the daemon's own default model).

The API key goes as ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..catalog import OPENAI_MODEL_NAMES
from ..errors import BadUpstreamResponse
from ..generation import Generation
from ..provider_config import ProviderConfig
from ..store import ImageStore
from .base import OnProgress, Work
from .remote import RemoteAPI, SyncProvider, image_bytes


@dataclass(frozen=True)
class ModelRules:
    """What one of OpenAI's image models takes."""

    sizes: tuple[str, ...]
    response_format: bool
    max_n: int


_GPT_IMAGE = ModelRules(("1024x1024", "1536x1024", "1024x1536"), False, 10)
#: By model id prefix, longest first; other models are sent the request as it is.
MODEL_RULES = {
    "dall-e-2": ModelRules(("256x256", "512x512", "1024x1024"), True, 10),
    "dall-e-3": ModelRules(("1024x1024", "1792x1024", "1024x1792"), True, 1),
    "gpt-image": _GPT_IMAGE, "chatgpt-image": _GPT_IMAGE,
}


def rules_for(model: str) -> ModelRules | None:
    return next((r for prefix, r in MODEL_RULES.items() if model.lower().startswith(prefix)),
                None)


def nearest_size(width: int, height: int, sizes: tuple[str, ...]) -> str:
    """The size of ``sizes`` closest in shape to ``width``×``height``, then in area."""
    def distance(size: str) -> tuple[float, float]:
        w, h = (int(x) for x in size.split("x"))
        return (abs(math.log((w / h) / (width / height))),
                abs(math.log((w * h) / (width * height))))
    return min(sizes, key=distance)


def extras(gen: Generation) -> dict[str, Any]:
    """The fields an arting-2api daemon takes beside OpenAI's."""
    out: dict[str, Any] = {
        "negative_prompt": gen.negative_prompt, "seed": gen.seed, "steps": gen.steps,
        "guidance": gen.guidance, "sampler": gen.sampler, "clip_skip": gen.clip_skip,
        "loras": [{"id": lo.id, "weight": lo.weight} for lo in gen.loras], "nsfw": gen.nsfw}
    if gen.is_img2img:
        out["strength"] = gen.strength
    return out


class OpenAIProvider(SyncProvider):
    def __init__(self, cfg: ProviderConfig, api: RemoteAPI, store: ImageStore) -> None:
        super().__init__(cfg, api, store)
        self.response_format = cfg.response_format
        self.send_extras = cfg.extras

    async def catalogue(self) -> dict[str, str]:
        answer = await self.api.call("GET", "/models")
        entries = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise BadUpstreamResponse(f"{self.label}'s /models answer holds no `data` list.")
        ids = [str(e["id"]) for e in entries if isinstance(e, dict) and e.get("id")]
        return {i: i for i in ids if i not in OPENAI_MODEL_NAMES}

    def fields(self, gen: Generation, n: int | None = None) -> dict[str, Any]:
        """The request's fields as the model takes them (``n``: this call's images)."""
        model = gen.model or self.default_model or ""
        rules = rules_for(model)
        out: dict[str, Any] = {"prompt": gen.prompt, "n": gen.n if n is None else n}
        if not gen.auto_size:
            out["size"] = nearest_size(gen.width, gen.height, rules.sizes) if rules \
                else gen.size
        if rules is None or rules.response_format:
            out["response_format"] = self.response_format
        if model:
            out["model"] = model
        if self.send_extras:
            out.update(extras(gen))
        return out

    async def generate(self, work: Work, progress: OnProgress) -> list[bytes]:
        gen = work.generation
        assert isinstance(gen, Generation)     # this provider does not upscale
        rules = rules_for(gen.model or self.default_model or "")
        per_call = rules.max_n if rules else gen.n
        calls = [min(per_call, gen.n - start) for start in range(0, gen.n, per_call)]
        made = await asyncio.gather(*(self._call(gen, n) for n in calls))
        return [image for batch in made for image in batch]

    async def _call(self, gen: Generation, n: int) -> list[bytes]:
        fields = self.fields(gen, n)
        if not gen.is_img2img:
            answer = await self.api.call("POST", "/images/generations", body=fields, long=True)
        else:
            assert gen.init_image is not None
            form = aiohttp.FormData()
            for key, value in fields.items():
                if isinstance(value, bool):
                    form.add_field(key, str(value).lower())
                elif isinstance(value, (str, int, float)):
                    form.add_field(key, str(value))
            form.add_field("image", await self.store.read(gen.init_image),
                           filename="image.png", content_type="image/png")
            answer = await self.api.call("POST", "/images/edits", form=form, long=True)
        return [await self._image(item) for item in self._items(answer)]

    def _items(self, answer: Any) -> list[dict]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise BadUpstreamResponse(f"{self.label}'s answer holds no `data` list.")
        return data

    async def _image(self, item: dict) -> bytes:
        if isinstance(item.get("b64_json"), str):
            return image_bytes(item["b64_json"], self.label)
        if isinstance(item.get("url"), str):
            return await self.api.download(item["url"])
        raise BadUpstreamResponse(f"{self.label} answered with an image that has neither "
                                  "`b64_json` nor `url`.", retryable=False)
