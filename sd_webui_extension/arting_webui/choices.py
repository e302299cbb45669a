"""The static choices the UI offers: Arting model ids, LoRA ids and sampler names.

They come from ``catalog.py``, the plugins' one copy of the daemon's built-in catalogue
(shared with the ComfyUI pack; a test keeps it equal to ``arting_daemon/catalog.py``):
the extension runs inside SD-WebUI's Python, where the daemon package is not installed,
and the UI is built at start-up, when asking the daemon would slow the start or fail.
The model and LoRA dropdowns also take typed ids, for models an operator added with
``extra_models``/``extra_loras``.
"""

from __future__ import annotations

from .catalog import LORA_WEIGHT as DEFAULT_LORA_WEIGHT
from .catalog import LORAS, MODELS, SAMPLERS

__all__ = ["DAEMON_DEFAULT", "DEFAULT_LORA_WEIGHT", "LORAS", "LORA_SLOTS", "MODELS",
           "NO_LORA", "NO_UPSCALE", "SAMPLERS", "UPSCALES", "sampler_name", "upscale_factor"]

#: The first model choice: let the daemon use its ``default_model``.
DAEMON_DEFAULT = "(daemon default)"
NO_LORA = "None"

#: How many LoRA rows the UI shows.
LORA_SLOTS = 3

#: The upscale choices: none, or Arting's image-enhance at 2× or 4× after generating.
NO_UPSCALE = "Off"
UPSCALES = (NO_UPSCALE, "2x", "4x")


def upscale_factor(choice: object) -> int | None:
    """The factor an upscale choice ("2x", "4×", 4, "Off", None) asks for, or None."""
    text = str(choice or "").strip().lower().rstrip("x×")
    if text in ("", NO_UPSCALE.lower(), "none", "0", "1"):
        return None
    if text not in ("2", "4"):
        raise ValueError(f"Arting upscales 2x or 4x; {choice!r} is neither.")
    return int(text)


def sampler_name(sampler: str | None, scheduler: str | None) -> str | None:
    """The UI's sampler, with A1111 ≥1.9's separate scheduler folded back in when
    Arting knows the combination ("DPM++ 2M" + "Karras" → "DPM++ 2M Karras")."""
    if sampler and scheduler and scheduler.lower() not in ("automatic", ""):
        combined = f"{sampler} {scheduler}"
        if combined.lower() in {s.lower() for s in SAMPLERS}:
            return combined
    return sampler or None
