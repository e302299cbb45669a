"""``GET /arting/v1/catalog``: what the daemon offers (public)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from .. import catalog
from ..auth import public
from ..generation import Generation
from ..openapi import operation
from ..state import CATALOG, PROVIDER, SETTINGS
from ..upscaling import SCALES
from .http import Answer, reply
from .intake import offers


class Named(Answer):
    id: str
    name: str


class Defaults(Answer):
    """What a job gets for what it leaves out."""

    steps: int
    guidance: float
    sampler: str
    clip_skip: int
    nsfw: bool


class CatalogLimits(Answer):
    max_images: int
    min_side: int
    max_side: int
    max_pixels: int
    size_multiple: int
    max_prompt_chars: int


class ModelView(Named):
    provider: str = Field(description="The provider offering it.")


class ProviderName(Answer):
    name: str = Field(description="As in the settings (`arting` without `[[providers]]`).")
    label: str = Field(description="As messages name it.")


class CatalogView(Answer):
    """What this daemon offers (``img2img``, ``upscale``: whether some provider does)."""

    models: list[ModelView]
    providers: list[ProviderName] = Field(description="In routing order.")
    default_model: str
    loras: list[Named]
    samplers: list[str]
    sizes: list[str]
    default_size: str
    defaults: Defaults
    limits: CatalogLimits
    img2img: bool
    upscale: bool
    upscale_scales: list[int]


@operation("What the daemon offers", "Models (each with its provider), the providers, LoRAs, "
           "samplers, size presets, limits, the defaults, and whether image-to-image and "
           "upscaling are on. Public.",
           answers={200: CatalogView})
@public
async def get_catalog(request: web.Request) -> web.Response:
    settings, models = request.config_dict[SETTINGS], request.config_dict[CATALOG]
    return reply(CatalogView(
        models=[ModelView(id=k, name=v, provider=models.owners[k])
                for k, v in models.models.items()],
        providers=[ProviderName(name=p.name, label=p.label)
                   for p in request.config_dict[PROVIDER].lineup()],
        default_model=models.default_model,
        loras=[Named(id=k, name=v) for k, v in models.loras.items()],
        samplers=list(catalog.SAMPLERS), sizes=list(catalog.SIZE_PRESETS),
        default_size=settings.default_size,
        defaults=Defaults(steps=_default("steps"), guidance=_default("guidance"),
                          sampler=_default("sampler"), clip_skip=_default("clip_skip"),
                          nsfw=settings.default_nsfw),
        limits=CatalogLimits(max_images=settings.max_images, min_side=settings.min_side,
                             max_side=settings.max_side, max_pixels=settings.max_pixels,
                             size_multiple=settings.size_multiple,
                             max_prompt_chars=settings.max_prompt_chars),
        img2img=offers(request, "img2img"), upscale=offers(request, "upscale"),
        upscale_scales=list(SCALES)))


def _default(field: str) -> Any:
    """What ``build_generation`` uses when a request leaves ``field`` out."""
    return Generation.model_fields[field].default


def add_routes(app: web.Application) -> None:
    app.router.add_get("/catalog", get_catalog)
