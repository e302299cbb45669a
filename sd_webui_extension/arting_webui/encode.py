"""PIL images from SD-WebUI → the base64 PNGs the daemon's job API takes, and back."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, ImageFilter, ImageOps


def png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """An init image as RGB; transparent parts on the background, as the host does."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background)
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image.convert("RGB")


def inpaint_mask(p: Any) -> Image.Image | None:
    """``p.image_mask`` in the daemon's convention (8-bit, white = repaint), read the
    way the host reads it: the alpha channel of a drawn mask, else its brightness;
    inverted for "Inpaint not masked"; softened by the mask blur."""
    mask = getattr(p, "image_mask", None)
    if mask is None:
        return None
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        mask = mask.getchannel("A")
        if getattr(p, "mask_round", True):
            mask = mask.point(lambda v: 255 if v > 128 else 0)
    else:
        mask = mask.convert("L")
    if getattr(p, "inpainting_mask_invert", 0):
        mask = ImageOps.invert(mask)
    blur = getattr(p, "mask_blur_x", None) or getattr(p, "mask_blur", None) or 0
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask
