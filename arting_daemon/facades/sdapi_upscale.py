"""A1111's upscaling, done by Arting's image-enhance: the extras endpoints
(``extra-single-image``, ``extra-batch-images``), the ``upscalers`` list, and txt2img's
Hires. fix (``enable_hr``), which here means: generate, then upscale.

Upscalers by name, as A1111 has them: ``None`` (the picture stays as it is), ``Lanczos``
and ``Nearest`` (a plain resize, done here) and ``Arting`` (image-enhance at 2× or 4×,
whichever reaches the factor asked for in one pass). As in A1111 the upscaled picture is
then resized to exactly the size asked for — ``factor`` × its size, rounded down to a
multiple of 8, or cut to ``upscaling_resize_w``×``upscaling_resize_h`` — so any factor
works. Hires. fix always upscales with Arting, whatever ``hr_upscaler`` names (Arting
has no latent upscale), and says so in the infotext.

The jobs run through ``run``, which the A1111 facade gives: it counts them in the
request's batch, so ``/progress`` and ``/interrupt`` see them like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image
from aiohttp import web

from .. import imaging
from ..config import Settings
from ..engine.jobs import Job, JobState
from ..errors import InvalidRequest
from ..state import PROVIDER, SETTINGS, STORE
from ..store import ImageStore, png_size
from ..upscaling import Source, Upscale, arting_scale, build_upscale, too_large
from .intake import take_source
from .sdapi_models import ExtrasOptions, Txt2ImgRequest

ARTING = "Arting"
LOCAL = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}

#: Runs upscale jobs to their end (in the A1111 request's batch) and returns them.
RunJobs = Callable[[list[Upscale]], Awaitable[list[Job]]]


def upscalers(settings: Settings) -> list[dict]:
    """``GET /upscalers``: A1111's built-in three, and Arting's when upscaling is on."""
    def entry(name: str, scale: float, model: str | None = None) -> dict:
        return {"name": name, "model_name": model, "model_path": None, "model_url": None,
                "scale": scale}
    listed = [entry("None", 4.0), entry("Lanczos", 4.0), entry("Nearest", 4.0)]
    if settings.upscale:
        listed.append(entry(ARTING, 4.0, f"image-enhance {settings.upscale_version}"))
    return listed


@dataclass(frozen=True)
class Target:
    """Where an upscale ends: ``factor`` × the picture, or (``size``) the factor that covers
    that size, cut to it when ``crop``; ``exact`` sizes need not be multiples of 8."""

    factor: float = 2.0
    size: tuple[int, int] | None = None
    crop: bool = False
    exact: bool = False
    #: The request's field that names it, for a refusal.
    param: str = "upscaling_resize"

    def by(self, width: int, height: int) -> float:
        if self.size is None:
            return self.factor
        return max(self.size[0] / width, self.size[1] / height)

    def final(self, width: int, height: int) -> tuple[int, int]:
        factor = self.by(width, height)
        if self.exact:
            return int(width * factor), int(height * factor)
        return int(width * factor) // 8 * 8, int(height * factor) // 8 * 8

    def cut(self) -> tuple[int, int] | None:
        return self.size if self.crop else None

    def within(self, max_pixels: int, width: int | None = None,
               height: int | None = None) -> None:
        """Refuse a target of more than ``max_pixels`` (``max_upscale_pixels``): the size
        asked for, or (given a picture's size) what that picture would become."""
        if width is None or height is None:
            if self.size is not None and self.size[0] * self.size[1] > max_pixels:
                raise too_large(f"{self.size[0]}x{self.size[1]}", max_pixels, self.param)
            return
        final = self.final(width, height)
        if final[0] * final[1] > max_pixels:
            raise too_large(f"A {width}x{height} picture upscaled to {final[0]}x{final[1]}",
                            max_pixels, self.param)


def extras_target(body: ExtrasOptions) -> Target:
    if body.resize_mode == 1:
        if body.upscaling_resize_w < 1 or body.upscaling_resize_h < 1:
            raise InvalidRequest("upscaling_resize_w and upscaling_resize_h must be at least 1.",
                                 param="upscaling_resize_w")
        return Target(size=(body.upscaling_resize_w, body.upscaling_resize_h),
                      crop=body.upscaling_crop, param="upscaling_resize_w")
    if body.upscaling_resize <= 0:
        raise InvalidRequest("upscaling_resize must be more than 0.", param="upscaling_resize")
    return Target(factor=body.upscaling_resize)


def hires_target(body: Txt2ImgRequest, width: int, height: int) -> Target:
    """Hires. fix's final size, as A1111 works it out from ``hr_scale`` or
    ``hr_resize_x``/``hr_resize_y`` (one of them 0: the other keeps the aspect)."""
    x, y = body.hr_resize_x, body.hr_resize_y
    if x <= 0 and y <= 0:
        if body.hr_scale <= 0:
            raise InvalidRequest("hr_scale must be more than 0.", param="hr_scale")
        return Target(factor=body.hr_scale, exact=True, param="hr_scale")
    if x <= 0:
        x = y * width // height
    elif y <= 0:
        y = x * height // width
    return Target(size=(x, y), crop=True, exact=True, param="hr_resize_x")


async def upscale(request: web.Request, sources: list[Source], upscaler: str | None,
                  target: Target, run: RunJobs) -> list[str]:
    """The pictures upscaled by ``upscaler`` to ``target``; returns stored hashes."""
    name = upscaler or "None"
    if name == "None":
        return [source.hash for source in sources]
    limit = request.config_dict[SETTINGS].max_upscale_pixels
    for source in sources:
        target.within(limit, source.width, source.height)
    store = request.config_dict[STORE]
    if name in LOCAL:
        return [await _finish(store, source.hash, source, target, LOCAL[name])
                for source in sources]
    if name != ARTING:
        raise InvalidRequest(f"could not find upscaler named {name}; GET /sdapi/v1/upscalers "
                             f"lists them ({ARTING!r} is Arting's image-enhance).",
                             param="upscaler_1")
    upscaled = await arting(request, sources, target, run)
    # A picture whose job was interrupted stays as it was, as in A1111.
    return [source.hash if digest is None else
            await _finish(store, digest, source, target, Image.Resampling.LANCZOS)
            for digest, source in zip(upscaled, sources)]


async def arting(request: web.Request, sources: list[Source], target: Target,
                 run: RunJobs) -> list[str | None]:
    """The pictures through image-enhance, each at the scale its target needs (one job
    per scale and ``max_images`` pictures); returns the upscaled pictures' hashes (None
    where the job was interrupted)."""
    request.config_dict[PROVIDER].require("upscale")
    settings = request.config_dict[SETTINGS]
    groups: dict[int, list[int]] = {}
    for i, source in enumerate(sources):
        groups.setdefault(arting_scale(target.by(source.width, source.height)), []).append(i)
    requests, order = [], []
    for scale, indexes in groups.items():
        for start in range(0, len(indexes), settings.max_images):
            chunk = indexes[start:start + settings.max_images]
            requests.append(build_upscale([sources[i] for i in chunk], scale,
                                          settings.upscale_version, settings.max_images,
                                          settings.max_upscale_pixels, target.param))
            order.append(chunk)
    hashes: list[str | None] = [None] * len(sources)
    for chunk, job in zip(order, await run(requests)):
        if job.state is JobState.SUCCEEDED:
            for i, image in zip(chunk, job.images):
                hashes[i] = image.hash
    return hashes


async def _finish(store: ImageStore, digest: str, source: Source, target: Target,
                  resample: Image.Resampling) -> str:
    """The upscaled picture at the target's exact size (and cut), stored."""
    width, height = target.final(source.width, source.height)

    def resize() -> bytes | None:
        png = store.path(digest).read_bytes()
        if png_size(png) == (width, height) and target.cut() in (None, (width, height)):
            return None
        return imaging.resize(png, width, height, crop=target.cut(), resample=resample)

    png = await asyncio.to_thread(resize)
    return digest if png is None else (await store.put(png)).hash


async def extras(request: web.Request, body: ExtrasOptions, images: list[str],
                 run: RunJobs) -> tuple[list[str], str]:
    """What the extras endpoints do: ``upscaler_1``, and ``upscaler_2`` blended over it
    with ``extras_upscaler_2_visibility``. Face restoration is not offered (A1111's
    ``gfpgan_visibility`` and ``codeformer_*`` are accepted and ignored)."""
    target = extras_target(body)
    target.within(request.config_dict[SETTINGS].max_upscale_pixels)   # before any picture
    sources = await take_sources(request, images, "image")
    out = await upscale(request, sources, body.upscaler_1, target, run)
    second = body.upscaler_2 not in (None, "None") and body.extras_upscaler_2_visibility > 0
    if second and body.upscaler_1 not in (None, "None"):
        store = request.config_dict[STORE]
        others = await upscale(request, sources, body.upscaler_2, target, run)

        def mixed(first: str, other: str) -> bytes:
            return imaging.blend(store.path(first).read_bytes(), store.path(other).read_bytes(),
                                 body.extras_upscaler_2_visibility)
        out = [(await store.put(await asyncio.to_thread(mixed, a, b))).hash
               for a, b in zip(out, others)]
    return out, html_info(body.upscaler_1, target)


async def take_sources(request: web.Request, images: list[str], param: str) -> list[Source]:
    if not images or not all(images):
        raise InvalidRequest(f"{param}: send at least one picture (base64 or a data URL).",
                             param=param)
    return [await take_source(request, image, param) for image in images]


def html_info(upscaler: str | None, target: Target) -> str:
    """What A1111 says it did, as ``html_info``."""
    if not upscaler or upscaler == "None":
        return ""
    by = (f"Postprocess upscale to: {target.size[0]}x{target.size[1]}" if target.size
          else f"Postprocess upscale by: {target.factor:g}")
    return f"<p>{by}, Postprocess upscaler: {upscaler}</p>"
