"""Init images and masks as clients send them, into the store: one way for every facade.

Clients send pictures as file parts, base64 or data URLs, and masks in two conventions
(OpenAI: transparent = edit; A1111 and the job API: white = edit). Here each becomes an
RGB PNG (the init image) and an 8-bit mask, white where the picture may change, stored
by hash for the ``Generation``. Pictures to upscale come the same ways, or as the hash of
an image the store has already (a result, with its origin); they become an ``Upscale``'s
sources.
Decoding and Pillow work run off the event loop.

A picture is taken in only for a caller with room left (``Gate.room``), and decoded only
once its header says it is within ``max_input_pixels``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from .. import imaging, provenance
from ..auth import principal
from ..errors import FeatureDisabled, NotFound
from ..state import GATE, PROVIDER, SETTINGS, STORE
from ..store import ImageStore, png_size
from ..upscaling import Source

_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class InitImage:
    """A stored init image (and mask): what a ``Generation`` refers to."""

    hash: str
    width: int
    height: int
    mask: str | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def require_img2img(request: web.Request) -> None:
    """Refuse image-to-image at once when no provider does it."""
    request.config_dict[PROVIDER].require("img2img")


def offers(request: web.Request, feature: str) -> bool:
    """Whether some provider does ``feature`` (``img2img``, ``upscale``)."""
    try:
        request.config_dict[PROVIDER].require(feature)
    except FeatureDisabled:
        return False
    return True


async def take_init_image(request: web.Request, image: bytes | str, param: str, *,
                          mask: bytes | str | None = None, mask_param: str = "mask",
                          mask_from: Literal["luma", "alpha"] = "luma", blur: int = 0,
                          invert: bool = False) -> InitImage:
    """Store an init image (raw bytes, base64 or a data URL) and its mask, if any.

    ``mask_from``: ``luma`` (white = repaint, softened by ``blur`` pixels as A1111's
    ``mask_blur``) or ``alpha`` (transparent = edit, OpenAI's); ``invert`` flips it.
    """
    limit = await admitted(request)

    def convert() -> tuple[bytes, int, int, bytes | None]:
        png, width, height = imaging.init_image(_raw(image, param), param, limit)
        mask_png = None
        if mask is not None:
            raw = _raw(mask, mask_param)
            mask_png = (imaging.mask_from_alpha(raw, mask_param, limit) if mask_from == "alpha"
                        else imaging.mask_from_luma(raw, mask_param, limit, blur=blur))
            if invert:
                mask_png = imaging.invert_mask(mask_png)
        return png, width, height, mask_png

    png, width, height, mask_png = await asyncio.to_thread(convert)
    store = request.config_dict[STORE]
    stored = await store.put(png)
    mask_hash = (await store.put(mask_png)).hash if mask_png is not None else None
    return InitImage(stored.hash, width, height, mask_hash)


async def take_source(request: web.Request, image: bytes | str, param: str,
                      seed: int = -1) -> Source:
    """A picture to upscale: the hash of a stored image, or one to store (raw bytes,
    base64 or a data URL) as an RGB PNG — unless it has the pixels of a picture a
    provider made and marked, which is taken instead (its origin with it)."""
    store = request.config_dict[STORE]
    if isinstance(image, str) and _HASH.fullmatch(image):
        if not store.exists(image):
            raise NotFound(f"{param}: no stored image has the hash {image}; send the image "
                           "itself (base64 or a data URL) instead.", param=param)
        return await stored_source(store, image, seed)
    limit = await admitted(request)

    def taken() -> tuple[bytes, int, int, str | None]:
        png, width, height = imaging.init_image(_raw(image, param), param, limit)
        return png, width, height, store.marked_like(png)
    png, width, height, marked = await asyncio.to_thread(taken)
    if marked is not None:
        return await stored_source(store, marked, seed)
    return Source(hash=(await store.put(png)).hash, width=width, height=height, seed=seed)


async def stored_source(store: ImageStore, digest: str, seed: int = -1) -> Source:
    """A stored picture to upscale, with its origin if a provider marked it
    (``provenance.py``: an upscale goes to the provider that made it, if it must)."""
    data = await store.read(digest)
    width, height = png_size(data) or (0, 0)
    return Source(hash=digest, width=width, height=height, seed=seed,
                  origin=provenance.origin(data))


async def admitted(request: web.Request) -> int:
    """Refuse a caller with no room left before its picture is read (``Gate.room``);
    returns the pixels a picture may have (``max_input_pixels``)."""
    await request.config_dict[GATE].room(principal(request))
    return request.config_dict[SETTINGS].max_input_pixels


def _raw(value: bytes | str, param: str) -> bytes:
    return imaging.decode_b64(value, param) if isinstance(value, str) else value
