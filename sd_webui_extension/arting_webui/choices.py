"""The static choices the UI offers: Arting model ids, LoRA ids and sampler names.

A copy of ``arting_daemon/catalog.py`` (a test keeps them equal): the extension runs
inside SD-WebUI's Python, where the daemon package is not installed, and the UI is
built at start-up, when asking the daemon would slow the start or fail. The model and
LoRA dropdowns also take typed ids, for models an operator added with
``extra_models``/``extra_loras``.
"""

from __future__ import annotations

#: The first model choice: let the daemon use its ``default_model``.
DAEMON_DEFAULT = "(daemon default)"
NO_LORA = "None"

MODELS: tuple[str, ...] = (
    "oneFORALLAnime", "oneFORALLReality_vPony", "asyncsMIX_v7", "cyberrealisticPony_v65",
    "maturemalemix_v14", "fuwafuwamix_v15BakedVae", "mistoonJade_v10Anime",
    "pastelMixPrunedFP16", "comicBabes_v2", "ghostmix_v20Bakedvae", "cyberrealisticSemi_v30",
    "furworldFurry", "divineanimemix_V2", "cuteAnime_v10", "absolutereality_v181",
    "animatedModelsOf_31", "SDXLFaetastic_v24", "divineelegancemix_V10", "dreamshaper_8",
)

LORAS: tuple[str, ...] = (
    "add_detail", "detailed_notrigger", "aidmaMidjourneyV6.1-v0.1", "CHP_0.1v",
    "EtherPDXLStyleXL", "Sv5-10", "Selene", "COMMIX", "M_Pixel", "pixel_f2",
    "sailormoon-pdxl-nvls-v1", "sailormoon-pdxl-nvwls-v1",
)

#: Sampler names Arting knows (A1111 names, some with the scheduler in the name).
SAMPLERS: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M",
    "DPM++ SDE", "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM",
)

#: How many LoRA rows the UI shows.
LORA_SLOTS = 3
DEFAULT_LORA_WEIGHT = 0.7


def sampler_name(sampler: str | None, scheduler: str | None) -> str | None:
    """The UI's sampler, with A1111 ≥1.9's separate scheduler folded back in when
    Arting knows the combination ("DPM++ 2M" + "Karras" → "DPM++ 2M Karras")."""
    if sampler and scheduler and scheduler.lower() not in ("automatic", ""):
        combined = f"{sampler} {scheduler}"
        if combined.lower() in {s.lower() for s in SAMPLERS}:
            return combined
    return sampler or None
