"""A1111's built-in scripts (``script_name``) that make sense without a local model.

Only **SD upscale** (img2img) does: A1111 upscales the init image by a factor with the
chosen upscaler, then redraws it tile by tile with img2img. Here Arting redraws the
init image in one piece (at its own size, within the daemon's limits), and the result
is upscaled by the factor with the chosen upscaler (``Arting`` included) to the size
A1111 would have made: the init image × the factor, sides rounded down to multiples of
8 (with the upscaler ``None``: the init image's own size). Its ``script_args`` are
A1111's: the info text and tile overlap (ignored), the upscaler (its index in
``/upscalers``, or its name), the factor.

Any other script name is refused as A1111 refuses a script it does not have: a 422
``Script '…' not found`` (and ``always on script … not found``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import InvalidRequest
from . import sdapi_upscale
from .sdapi_models import Txt2ImgRequest

SD_UPSCALE = "sd upscale"
#: ``GET /scripts``: the selectable scripts of each tab, lower-case as A1111 lists them.
SCRIPTS = {"txt2img": [], "img2img": [SD_UPSCALE]}
#: SD upscale's defaults, as its controls have them.
OVERLAP, FACTOR = 64, 2.0


@dataclass(frozen=True)
class Upscaling:
    """What a request's images go through after they are made: ``upscaler`` (a name from
    ``/upscalers``) to ``target``, and what the infotext says of it."""

    upscaler: str
    target: sdapi_upscale.Target
    said: dict[str, Any]


def script_info(settings: Settings) -> list[dict[str, Any]]:
    """``GET /script-info``: SD upscale's controls, as A1111 describes them."""
    def arg(label: str, value: Any, minimum: Any = None, maximum: Any = None,
            step: Any = None, choices: list[str] | None = None) -> dict[str, Any]:
        return {"label": label, "value": value, "minimum": minimum, "maximum": maximum,
                "step": step, "choices": choices}
    names = [u["name"] for u in sdapi_upscale.upscalers(settings)]
    return [{"name": SD_UPSCALE, "is_alwayson": False, "is_img2img": True, "args": [
        arg("", "Upscales the picture by the scale factor: Arting redraws it, then the "
                "upscaler enlarges it."),
        arg("Tile overlap", OVERLAP, 0, 256, 16),
        arg("Upscaler", names[0], choices=names),
        arg("Scale Factor", FACTOR, 1.0, 4.0, 0.05)]}]


def check(body: Txt2ImgRequest, kind: str) -> None:
    """Refuse scripts this daemon does not run, in A1111's words."""
    for name in body.alwayson_scripts or {}:
        raise InvalidRequest(f"always on script {name} not found", param="alwayson_scripts")
    if body.script_name and body.script_name.lower() not in SCRIPTS[kind]:
        raise InvalidRequest(f"Script '{body.script_name}' not found", param="script_name")


def sd_upscale(body: Txt2ImgRequest, settings: Settings, width: int,
               height: int) -> Upscaling | None:
    """SD upscale of an init image of ``width``×``height``, if the request runs it."""
    if (body.script_name or "").lower() != SD_UPSCALE:
        return None
    args = list(body.script_args) + [None] * 4
    overlap = OVERLAP if args[1] is None else args[1]
    factor = _number(FACTOR if args[3] is None else args[3], "script_args")
    names = [u["name"] for u in sdapi_upscale.upscalers(settings)]
    chosen = names[0] if args[2] is None else args[2]
    if isinstance(chosen, int) and not isinstance(chosen, bool):
        if not 0 <= chosen < len(names):
            raise InvalidRequest(f"SD upscale's upscaler {chosen} is not an index of "
                                 f"/sdapi/v1/upscalers ({', '.join(names)}).",
                                 param="script_args")
        chosen = names[chosen]
    chosen = {name.lower(): name for name in names}.get(str(chosen).lower(), str(chosen))
    said = {"SD upscale overlap": overlap, "SD upscale upscaler": chosen}
    if chosen == "None":    # A1111 redraws the init image as it is: at its own size
        return Upscaling("Lanczos", sdapi_upscale.Target(size=(width, height), crop=True,
                                                         exact=True, param="script_args"),
                         said)
    final = (int(width * factor) // 8 * 8, int(height * factor) // 8 * 8)
    if min(final) < 8:
        raise InvalidRequest("SD upscale's factor makes the picture smaller than 8 pixels.",
                             param="script_args")
    return Upscaling(chosen, sdapi_upscale.Target(size=final, crop=True, exact=True,
                                                  param="script_args"), said)


def _number(value: Any, param: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"SD upscale's scale factor must be a number; got {value!r}.",
                             param=param) from None
    if not number > 0:
        raise InvalidRequest("SD upscale's scale factor must be more than 0.", param=param)
    return number
