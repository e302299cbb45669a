"""Work on images: init images, masks and masked compositing (Pillow); the exact resizes
A1111's upscaling ends with; and a PNG's text metadata (A1111's ``parameters``).

Arting's image-to-image takes one image and no mask, so masks are honoured here:
the generated image replaces the init image only where the mask says so. Masks are
kept in one convention — an 8-bit image, white where the picture may change — made
from OpenAI's (transparent = edit) or A1111's (white = edit) convention.
Everything here is synchronous; callers run it in a thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib

from PIL import Image, ImageFilter, UnidentifiedImageError

from .errors import InvalidRequest

MAX_PIXELS = 64 * 1024 * 1024


def decode_b64(value: str, param: str) -> bytes:
    """Raw base64 or a ``data:image/...;base64,`` URL → bytes."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param} is not valid base64 image data.", param=param) from None


def open_image(data: bytes, param: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise InvalidRequest(f"{param} is too large ({img.width}x{img.height}).",
                                 param=param)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidRequest(f"{param} is not an image Pillow can read (PNG, JPEG, WebP…).",
                             param=param) from None


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def init_image(data: bytes, param: str = "image") -> tuple[bytes, int, int]:
    """An init image as RGB PNG bytes, with its size."""
    img = open_image(data, param)
    rgb = img.convert("RGB")
    return _png(rgb), rgb.width, rgb.height


def mask_from_alpha(data: bytes, param: str = "mask") -> bytes:
    """OpenAI's mask: fully transparent pixels mark where to edit."""
    img = open_image(data, param)
    if "A" not in img.getbands():
        raise InvalidRequest("The mask must have an alpha channel: transparent pixels mark "
                             "the area to edit.", param=param)
    alpha = img.getchannel("A")
    return _png(alpha.point(lambda a: 255 if a == 0 else 0))


def mask_from_luma(data: bytes, param: str = "mask", blur: int = 0) -> bytes:
    """A1111's mask: white marks where to repaint; ``blur`` softens its edge by that
    many pixels, as A1111's ``mask_blur`` does."""
    mask = open_image(data, param).convert("L")
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return _png(mask)


def invert_mask(mask_png: bytes) -> bytes:
    return _png(Image.open(io.BytesIO(mask_png)).convert("L").point(lambda v: 255 - v))


def apply_mask(generated: bytes, init: bytes, mask: bytes) -> bytes:
    """The generated image where the mask is white, the init image elsewhere."""
    gen = Image.open(io.BytesIO(generated)).convert("RGB")
    base = Image.open(io.BytesIO(init)).convert("RGB").resize(gen.size)
    m = Image.open(io.BytesIO(mask)).convert("L").resize(gen.size)
    return _png(Image.composite(gen, base, m))


def resize(png: bytes, width: int, height: int, crop: tuple[int, int] | None = None,
           resample: Image.Resampling = Image.Resampling.LANCZOS) -> bytes:
    """An image at exactly ``width``×``height``, then cut to ``crop`` around its centre,
    as A1111 finishes an upscale to a factor or to a size."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), resample)
    if crop is not None and crop != img.size:
        canvas = Image.new("RGB", crop)
        canvas.paste(img, (crop[0] // 2 - img.width // 2, crop[1] // 2 - img.height // 2))
        img = canvas
    return _png(img)


def blend(first: bytes, second: bytes, weight: float) -> bytes:
    """``second`` laid over ``first`` with ``weight`` (0..1), as A1111 mixes two upscalers."""
    a = Image.open(io.BytesIO(first)).convert("RGB")
    b = Image.open(io.BytesIO(second)).convert("RGB").resize(a.size)
    return _png(Image.blend(a, b, min(1.0, max(0.0, weight))))


def png_with_text(png: bytes, key: str, text: str) -> bytes:
    """The PNG with a text chunk right after its header, as A1111 writes ``parameters``
    (tEXt when Latin-1 can hold the text, else UTF-8 iTXt); no pixel is re-encoded."""
    if png[12:16] != b"IHDR":
        return png
    try:
        kind, data = b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")
    except UnicodeEncodeError:
        kind, data = b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                     zlib.crc32(kind + data))
    return png[:33] + chunk + png[33:]
