"""AUTOMATIC1111 / Forge with ``--api`` as a provider (``kind = "a1111"``).

* ``POST /sdapi/v1/txt2img`` or ``img2img`` with the Generation's fields: prompt (LoRAs
  as ``<lora:id:weight>`` tags, A1111's way), negative prompt, seed, size, steps, CFG
  scale, sampler, clip skip, ``batch_size`` images; the checkpoint as
  ``override_settings.sd_model_checkpoint`` (its title), left loaded afterwards so the
  next job does not wait for it again. The mask is applied by the runner, as for every
  provider. NSFW has no A1111 counterpart.
* ``GET /sdapi/v1/sd-models``: the catalogue (checkpoints by ``model_name``).
* ``GET /sdapi/v1/progress`` while the call runs: the job's progress.
* ``POST /sdapi/v1/interrupt`` when the job is cancelled or out of time. A1111 works on
  one job at a time and its interrupt stops whatever it is doing, so the provider runs
  one job at a time unless ``max_jobs`` says otherwise.

HTTP Basic credentials (A1111's ``--api-auth``) come from ``username``/``password``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

from ..errors import ArtingError, BadUpstreamResponse, ModelNotFound
from ..generation import Generation
from ..provider_config import ProviderConfig
from ..store import ImageStore
from ..tasks import stop
from .base import OnProgress, Work
from .remote import RemoteAPI, SyncProvider, image_bytes

log = logging.getLogger(__name__)

API = "/sdapi/v1"
#: Seconds between two looks at ``/progress`` while a job runs.
PROGRESS_EVERY = 0.5


def request_body(gen: Generation, checkpoint: str | None) -> dict[str, Any]:
    """The txt2img body (img2img adds its image), field for field as A1111 takes it."""
    tags = "".join(f" <lora:{lo.id}:{lo.weight:g}>" for lo in gen.loras)
    overrides: dict[str, Any] = {"CLIP_stop_at_last_layers": gen.clip_skip}
    if checkpoint:
        overrides["sd_model_checkpoint"] = checkpoint
    return {
        "prompt": gen.prompt + tags, "negative_prompt": gen.negative_prompt,
        "seed": gen.seed, "width": gen.width, "height": gen.height, "steps": gen.steps,
        "cfg_scale": gen.guidance, "sampler_name": gen.sampler, "batch_size": gen.n,
        "n_iter": 1, "override_settings": overrides,
        "override_settings_restore_afterwards": False,
        "send_images": True, "save_images": False,
    }


class A1111Provider(SyncProvider):
    def __init__(self, cfg: ProviderConfig, api: RemoteAPI, store: ImageStore) -> None:
        super().__init__(cfg, api, store)
        self.titles: dict[str, str] = {}     # model_name (lower case) → title

    async def catalogue(self) -> dict[str, str]:
        answer = await self.api.call("GET", f"{API}/sd-models")
        if not isinstance(answer, list):
            raise BadUpstreamResponse(f"{self.label}'s sd-models answer is not a list.")
        models = [m for m in answer if isinstance(m, dict) and m.get("model_name")]
        self.titles = {str(m["model_name"]).lower(): str(m.get("title") or m["model_name"])
                       for m in models}
        return {str(m["model_name"]): str(m["model_name"]) for m in models}

    async def checkpoint(self, model: str) -> str | None:
        """The title of ``model`` (a ``model_name`` or a title) for ``override_settings``;
        the catalogue is read again once if it is not in it. No model: the loaded one."""
        if not model:
            return None
        key = model.lower()
        if key not in self.titles and key not in {t.lower() for t in self.titles.values()}:
            await self.catalogue()
        if key in self.titles:
            return self.titles[key]
        for title in self.titles.values():
            if title.lower() == key:
                return title
        raise ModelNotFound(f"{self.label} has no checkpoint `{model}`; it has: "
                            f"{', '.join(sorted(self.titles)) or 'none'}.", param="model")

    async def generate(self, work: Work, progress: OnProgress) -> list[bytes]:
        gen = work.generation
        assert isinstance(gen, Generation)     # this provider does not upscale
        body = request_body(gen, await self.checkpoint(gen.model))
        route = "txt2img"
        if gen.is_img2img:
            assert gen.init_image is not None
            route = "img2img"
            body["init_images"] = [base64.b64encode(await self.store.read(gen.init_image))
                                   .decode()]
            body["denoising_strength"] = gen.strength
        watcher = asyncio.create_task(self._watch(progress), name=f"a1111-progress-{work.id}")
        try:
            answer = await self.api.call("POST", f"{API}/{route}", body=body, long=True)
        finally:
            await stop(watcher)
        return self._images(answer, gen.n)

    def _images(self, answer: Any, n: int) -> list[bytes]:
        """The batch's images: A1111 may put a grid first (``index_of_first_image``) and
        extensions may add more after them."""
        if not isinstance(answer, dict) or not isinstance(answer.get("images"), list):
            raise BadUpstreamResponse(f"{self.label}'s answer holds no `images` list.")
        first = 0
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            first = int(json.loads(answer.get("info") or "{}").get("index_of_first_image", 0))
        return [image_bytes(item, self.label) for item in answer["images"][first:first + n]]

    async def _watch(self, progress: OnProgress) -> None:
        """Report A1111's progress until cancelled; a look that fails is skipped."""
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            try:
                state = await self.api.call("GET", f"{API}/progress?skip_current_image=true")
            except ArtingError as exc:
                log.debug("%s: progress unavailable (%s)", self.name, type(exc).__name__)
                continue
            fraction = state.get("progress") if isinstance(state, dict) else None
            if isinstance(fraction, (int, float)) and fraction > 0:
                progress(float(fraction))

    async def interrupt(self) -> None:
        await self.api.call("POST", f"{API}/interrupt")
