"""Any server with OpenAI's Images API as a provider (``kind = "openai"``).

* ``POST {base_url}/images/generations`` (JSON) and, where the server has them and
  ``img2img = true``, ``POST {base_url}/images/edits`` (multipart, the init image as
  ``image``): ``model``, ``prompt``, ``n``, ``size`` and ``response_format``. With
  ``extras = true`` Arting's own fields go along (negative prompt, seed, steps,
  guidance, sampler, clip skip, LoRAs, NSFW, strength), as another arting-2api daemon
  takes them; strict servers refuse unknown fields, so they are off by default.
* Answers in ``b64_json`` or ``url`` (downloaded at once, from the server's own host
  or the provider's ``image_hosts``).
* ``GET {base_url}/models``: the catalogue, without the OpenAI names clients hard-code
  (here they stand for the daemon's own default model).

The API key goes as ``Authorization: Bearer``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from ..catalog import OPENAI_MODEL_NAMES
from ..errors import BadUpstreamResponse
from ..generation import Generation
from ..provider_config import ProviderConfig
from ..store import ImageStore
from .base import Progress, Work
from .remote import RemoteAPI, SyncProvider, image_bytes


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

    def fields(self, gen: Generation) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": gen.prompt, "n": gen.n, "size": gen.size,
                               "response_format": self.response_format}
        model = gen.model or self.default_model
        if model:
            out["model"] = model
        if self.send_extras:
            out.update(extras(gen))
        return out

    async def generate(self, work: Work, progress: Progress) -> list[bytes]:
        gen = work.generation
        fields = self.fields(gen)
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
