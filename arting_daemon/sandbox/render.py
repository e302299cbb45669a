"""The pictures behind the sandbox's image URLs, drawn with Pillow.

A picture is a pure function of what it shows (prompt, seed, model, size, init image,
strength), so the same request gives byte-identical PNGs on every run and a test can
tell seeds, prompts and init images apart. The prompt, seed and model are written on
the image so a human looking at a demo sees where it came from.

Drawing and PNG encoding take tens of milliseconds, so ``PngCache`` runs them in the
loop's executor and keeps the results (bounded by bytes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import cast

from PIL import Image, ImageDraw, ImageFont, ImageOps

BLOCKED_GREY = (128, 128, 128)
_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(?P<data>.*)", re.S)


@dataclass(frozen=True)
class Picture:
    """Everything an output image depends on; also its cache key."""

    prompt: str
    seed: int
    model: str
    width: int
    height: int
    init_image: bytes | None = None
    strength: float = 1.0
    blocked: bool = False


def render_png(picture: Picture) -> bytes:
    """Draw ``picture`` and encode it as PNG. Blocking: run it in an executor."""
    image = _blocked(picture) if picture.blocked else _artwork(picture)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def probe_image(data: bytes) -> str | None:
    """The Pillow format name ("PNG", "JPEG", ...) of ``data``, or None if it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return image.format
    except Exception:  # Pillow signals bad input with many unrelated exception types
        return None


def load_data_url(url: str) -> bytes | None:
    """The image bytes of a ``data:image/...;base64,`` URL, or None if it holds no image."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        return None
    try:
        data = base64.b64decode("".join(match["data"].split()), validate=True)
    except binascii.Error:
        return None
    return data if probe_image(data) else None


def _artwork(picture: Picture) -> Image.Image:
    size = (picture.width, picture.height)
    rng = random.Random(f"{picture.seed}|{picture.model}|{picture.prompt}")
    art = _background(rng, size)
    lines = [f"seed {picture.seed}", f"model {picture.model}"]
    if picture.init_image is not None:
        init = ImageOps.fit(Image.open(io.BytesIO(picture.init_image)).convert("RGB"), size)
        art = Image.blend(init, art, picture.strength)
        lines.append(f"img2img strength {picture.strength:.2f}")
    return _caption(art, picture.prompt, lines)


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A seeded two-colour gradient with a few seeded discs."""
    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    gradient = Image.linear_gradient("L").resize(size)
    art = ImageOps.colorize(gradient, colour(), colour())
    draw = ImageDraw.Draw(art)
    width, height = size
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(max(2, min(size) // 10), max(3, min(size) // 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour())
    return art


def _caption(art: Image.Image, prompt: str, info: list[str]) -> Image.Image:
    """Write the wrapped prompt and the info lines on a dark band at the bottom."""
    width, height = art.size
    font = cast(ImageFont.FreeTypeFont,    # with a size: the built-in FreeType font
                ImageFont.load_default(size=max(10, min(width, height) // 22)))
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + 2
    margin = max(4, line_height // 2)
    room = max(1, int(height * 0.6) // line_height - len(info))
    lines = _wrap(prompt, font, width - 2 * margin, room) + info
    top = max(0, height - len(lines) * line_height - 2 * margin)

    band = Image.new("RGBA", art.size, (0, 0, 0, 0))
    ImageDraw.Draw(band).rectangle((0, top, width, height), fill=(0, 0, 0, 170))
    out = Image.alpha_composite(art.convert("RGBA"), band)
    draw = ImageDraw.Draw(out)
    for n, line in enumerate(lines):
        draw.text((margin, top + margin + n * line_height), line, font=font,
                  fill=(255, 255, 255, 255))
    return out.convert("RGB")


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap; words wider than a line are split; overflow ends in "..."."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while len(word) > 1 and font.getlength(word) > width:
            cut = _fitting_prefix(word, font, width)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:max(1, len(lines[-1]) - 3)] + "..."
    return lines


def _fitting_prefix(word: str, font: ImageFont.FreeTypeFont, width: int) -> int:
    cut = 1
    while cut < len(word) and font.getlength(word[:cut + 1]) <= width:
        cut += 1
    return cut


def _blocked(picture: Picture) -> Image.Image:
    """The NSFW placeholder: flat grey with a small "blocked" label."""
    image = Image.new("RGB", (picture.width, picture.height), BLOCKED_GREY)
    font = ImageFont.load_default(size=max(10, min(picture.width, picture.height) // 16))
    ImageDraw.Draw(image).text((picture.width // 2, picture.height // 2), "blocked",
                               font=font, fill=(160, 160, 160), anchor="mm")
    return image


class PngCache:
    """Rendered PNGs by picture, least recently used dropped past ``max_bytes``.

    Concurrent requests for the same picture share one render.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.renders = 0
        self._items: OrderedDict[Picture, bytes] = OrderedDict()
        self._size = 0
        self._inflight: dict[Picture, asyncio.Future[bytes]] = {}

    async def png(self, picture: Picture) -> bytes:
        if picture in self._items:
            self._items.move_to_end(picture)
            return self._items[picture]
        future = self._inflight.get(picture)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(None, render_png, picture)
            self._inflight[picture] = future
            future.add_done_callback(partial(self._settle, picture))
            self.renders += 1
        return await asyncio.shield(future)

    def _settle(self, picture: Picture, future: asyncio.Future[bytes]) -> None:
        del self._inflight[picture]
        if future.cancelled() or future.exception() is not None:
            return
        data = future.result()
        self._items[picture] = data
        self._size += len(data)
        while self._size > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)
