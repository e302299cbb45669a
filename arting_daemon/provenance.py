"""Which provider made a stored picture, written into the PNG itself.

Midjourney upscales a picture (``U1``-``U4``) only as a part of the grid task it came
from, so an upscale must know that task. A provider that needs this marks the pictures
it makes with an ``arting-2api:origin`` text chunk (its name, its upstream, its own
reference) and a ``Description`` for people; ``origin`` reads the mark back from a
stored picture, with no index to keep, across restarts and replicas.

Only pictures already in the store are read for it, never one a client sends: every
picture a client sends is re-encoded before it is stored (``imaging.init_image``), so
a mark in the store was made by a provider.

A client that has only the pixels (a ComfyUI IMAGE, a picture in SD-WebUI's Extras tab)
sends them re-encoded, without the mark; the store finds the marked picture it came
from by its ``likeness``, the digest of its size and RGB pixels, which it keeps for
each marked picture it stores (``ImageStore.marked_like``). A client learns nothing by
it it does not hold already: only the exact pixels find a picture.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydantic import ValidationError

from .upscaling import Origin

KEY = "arting-2api:origin"
#: Chunks read past before giving up (the mark sits before the image data).
_MAX_CHUNKS = 64


def upstream_id(url: str) -> str:
    """A short stand-in for an upstream's URL in marks (the URL itself may hold a token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def mark(origin: Origin, description: str) -> PngInfo:
    """The chunks to save a picture with (``Image.save(..., pnginfo=mark(...))``)."""
    info = PngInfo()
    info.add_text(KEY, origin.model_dump_json())
    info.add_itxt("Description", description)
    return info


def origin(png: bytes) -> Origin | None:
    """The mark of a PNG, if it has a valid one (read without decoding the picture)."""
    pos = 8
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > len(png):
            return None
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            return None
        data = png[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and data.startswith(KEY.encode() + b"\0"):
            try:
                return Origin.model_validate(json.loads(data[len(KEY) + 1:]))
            except (ValueError, ValidationError):
                return None
        pos += 12 + length
    return None


def likeness(png: bytes) -> str:
    """The digest of a picture's size and RGB pixels: the same for every encoding of
    them, with or without a mark. Blocking (it decodes): run it in a thread."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()
