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
           "NO_LORA", "SAMPLERS", "sampler_name"]

#: The first model choice: let the daemon use its ``default_model``.
DAEMON_DEFAULT = "(daemon default)"
NO_LORA = "None"

#: How many LoRA rows the UI shows.
LORA_SLOTS = 3


def sampler_name(sampler: str | None, scheduler: str | None) -> str | None:
    """The UI's sampler, with A1111 ≥1.9's separate scheduler folded back in when
    Arting knows the combination ("DPM++ 2M" + "Karras" → "DPM++ 2M Karras")."""
    if sampler and scheduler and scheduler.lower() not in ("automatic", ""):
        combined = f"{sampler} {scheduler}"
        if combined.lower() in {s.lower() for s in SAMPLERS}:
            return combined
    return sampler or None
