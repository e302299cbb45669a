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
import warnings
import zlib

from PIL import Image, ImageFilter, UnidentifiedImageError

from .errors import InvalidRequest

#: The formats a client's picture may be in: each reads its size from a header and decodes
#: nothing before ``load`` (and none runs a program, as Pillow's EPS plug-in does).
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def guard(max_pixels: int) -> None:
    """Pillow's own decompression-bomb guard set to the largest picture the daemon ever
    opens (``max_pixels``), its warning an error: a bigger one is never decoded, whoever
    opens it. Process-wide, as Pillow's setting is."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def decode_b64(value: str, param: str) -> bytes:
    """Raw base64 or a ``data:image/...;base64,`` URL → bytes."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param} is not valid base64 image data.", param=param) from None


def open_image(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """A client's picture, decoded only once its header says it has at most ``max_pixels``
    pixels (``max_input_pixels``)."""
    unreadable = InvalidRequest(f"{param} is not an image Pillow can read (PNG, JPEG, WebP, "
                                "GIF, BMP).", param=param)
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels(param, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise unreadable from None
    if img.width * img.height > max_pixels:
        raise too_many_pixels(param, max_pixels, img.width, img.height)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise unreadable from None
    return img


def too_many_pixels(param: str, max_pixels: int, width: int = 0,
                    height: int = 0) -> InvalidRequest:
    size = f" ({width}x{height})" if width else ""
    return InvalidRequest(f"{param} is too large{size}: pictures sent may have at most "
                          f"{max_pixels} pixels (max_input_pixels); send a smaller one.",
                          param=param)


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def init_image(data: bytes, param: str, max_pixels: int) -> tuple[bytes, int, int]:
    """An init image as RGB PNG bytes, with its size."""
    img = open_image(data, param, max_pixels)
    rgb = img.convert("RGB")
    return _png(rgb), rgb.width, rgb.height


def mask_from_alpha(data: bytes, param: str, max_pixels: int) -> bytes:
    """OpenAI's mask: fully transparent pixels mark where to edit."""
    img = open_image(data, param, max_pixels)
    if "A" not in img.getbands():
        raise InvalidRequest("The mask must have an alpha channel: transparent pixels mark "
                             "the area to edit.", param=param)
    alpha = img.getchannel("A")
    return _png(alpha.point(lambda a: 255 if a == 0 else 0))


def mask_from_luma(data: bytes, param: str, max_pixels: int, blur: int = 0) -> bytes:
    """A1111's mask: white marks where to repaint; ``blur`` softens its edge by that
    many pixels, as A1111's ``mask_blur`` does."""
    mask = open_image(data, param, max_pixels).convert("L")
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
