"""Arting's 2× / 4× upscale (the daemon's upscale job) inside SD-WebUI: followed with the
WebUI's progress bar, stopped by its Interrupt button — for the "Arting" upscaler
(``upscaler.py``) and for the script's Hires. fix — and Hires. fix's target size.

Hires. fix with the Arting script: the images are made at the tab's size, then
upscaled as the tab says (``hr_scale``, or ``hr_resize_x``/``hr_resize_y``, the size
worked out as the WebUI does) — by Arting's upscaler when Hires. fix names it, else by
the WebUI's own chosen upscaler on the returned images. A latent upscaler works on the
local model's latents, which Arting's images do not have: Arting's upscaler stands in
for it (or, with the daemon's upscaling off, Lanczos), and the infotext says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image

from .daemon_client import DaemonClient, DaemonError, JobCancelled, status_line

NAME = "Arting"
#: The WebUI's latent upscale modes (``shared.latent_upscale_modes``) and its default.
LATENT = ("Latent", "Latent (antialiased)", "Latent (bicubic)",
          "Latent (bicubic antialiased)", "Latent (nearest)", "Latent (nearest-exact)")


def arting_scale(factor: float) -> int:
    """The one image-enhance pass that reaches ``factor``: 2× up to 2, else 4×."""
    return 2 if factor <= 2 else 4


def follow(client: DaemonClient, body: dict, state: Any, *, timeout: float,
           client_name: str) -> dict | None:
    """Run a daemon upscale job, its progress in the WebUI's progress bar (sampling steps
    out of 100, one line of text) and the Interrupt button cancelling it; the job, or None
    when it was interrupted. What the bar showed before is put back afterwards: a Hires.
    fix of the WebUI's own runs inside its sampling."""
    fields = ("sampling_step", "sampling_steps", "textinfo")
    before = {name: getattr(state, name, None) for name in fields}

    def shown(job: dict) -> None:
        state.sampling_steps = 100
        state.sampling_step = min(100, int(100 * (job.get("progress") or 0.0)))
        state.textinfo = f"Arting: {status_line(job)}"

    try:
        return client.run(body, on_progress=shown, client_name=client_name, timeout=timeout,
                          should_cancel=lambda: bool(state.interrupted))
    except JobCancelled:
        if state.interrupted:
            return None
        raise
    finally:
        for name, value in before.items():
            setattr(state, name, value)


# --- Hires. fix with the Arting script ------------------------------------------------------

@dataclass(frozen=True)
class Hires:
    """A Hires. fix to apply to the returned images: to ``size`` (then cut to ``crop``),
    with ``upscaler`` (``NAME`` for Arting's); ``said`` goes into the infotext."""

    size: tuple[int, int]
    crop: tuple[int, int] | None
    upscaler: str
    said: dict[str, Any]
    #: Why the chosen upscaler is not the one used, or None.
    note: str | None = None


def hires_of(p: Any, arting_upscales: bool) -> Hires | None:
    """``p``'s Hires. fix, or None when it has none. ``arting_upscales``: whether the
    daemon offers upscaling (its catalog's ``upscale``)."""
    if not getattr(p, "enable_hr", False) or getattr(p, "init_images", None):
        return None
    width, height = int(p.width), int(p.height)
    x, y = int(getattr(p, "hr_resize_x", 0) or 0), int(getattr(p, "hr_resize_y", 0) or 0)
    crop = None
    if x == 0 and y == 0:
        scale = float(getattr(p, "hr_scale", 2.0) or 2.0)
        size = (int(width * scale), int(height * scale))
        said: dict[str, Any] = {"Hires upscale": f"{scale:g}"}
    else:   # as the WebUI works it out: one side given keeps the aspect; both: fill, cut
        said = {"Hires resize": f"{x}x{y}"}
        if y == 0:
            size = (x, x * height // width)
        elif x == 0:
            size = (y * width // height, y)
        else:
            size = ((x, x * height // width) if width / height < x / y
                    else (y * width // height, y))
            crop = (x, y)
    chosen = getattr(p, "hr_upscaler", None) or LATENT[0]
    if chosen in LATENT:
        used = NAME if arting_upscales else "Lanczos"
        note = (f"Hires. fix: {chosen} upscales the local model's latents, which Arting's "
                f"images do not have; {used} upscaled them instead.")
        said["Hires upscaler"] = f"{used} (for {chosen})"
        return Hires(size, crop, used, said, note)
    if chosen == NAME and not arting_upscales:
        raise DaemonError("Hires. fix asks for the Arting upscaler, but the daemon has "
                          "upscaling off (its `upscale` setting): pick another upscaler.")
    said["Hires upscaler"] = chosen
    return Hires(size, crop, chosen, said)


def apply(hires: Hires, images: list, hashes: list[str], run: Callable[[dict], dict],
          download: Callable[[dict], Any],
          resize: Callable[[Any, int, int, str], Any]) -> list:
    """The images after the Hires. fix: through one daemon upscale job (``run``, the
    script's own way of following a job) for Arting's upscaler, else each through the
    WebUI's ``resize`` with its upscaler; then to the exact size, and cut."""
    width, height = hires.size
    if hires.upscaler == NAME:
        factor = max(width / images[0].width, height / images[0].height)
        job = run({"kind": "upscale", "scale": arting_scale(factor), "images": hashes})
        images = [download(image) for image in job["images"]]
    out = []
    for image in images:
        if hires.upscaler != NAME:
            image = resize(image, width, height, hires.upscaler)
        elif image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        if hires.crop is not None and image.size != hires.crop:
            left, top = (width - hires.crop[0]) // 2, (height - hires.crop[1]) // 2
            image = image.crop((left, top, left + hires.crop[0], top + hires.crop[1]))
        out.append(image)
    return out
