"""What the plugins offer, known without asking the daemon.

ComfyUI's ``INPUT_TYPES`` runs on every ``/object_info`` request and SD-WebUI builds
its UI at start-up, so their choices must be static, and neither host has the daemon
package installed. This is the plugins' one copy of the daemon's built-in catalogue
(``arting_daemon/catalog.py``) and default limits — the SD-WebUI extension links to this
file, as it does to ``daemon_client.py`` — and a test keeps the two in step.
"""

from __future__ import annotations

MODELS: tuple[str, ...] = (
    "oneFORALLAnime", "oneFORALLReality_vPony", "asyncsMIX_v7", "cyberrealisticPony_v65",
    "maturemalemix_v14", "fuwafuwamix_v15BakedVae", "mistoonJade_v10Anime",
    "pastelMixPrunedFP16", "comicBabes_v2", "ghostmix_v20Bakedvae", "cyberrealisticSemi_v30",
    "furworldFurry", "divineanimemix_V2", "cuteAnime_v10", "absolutereality_v181",
    "animatedModelsOf_31", "SDXLFaetastic_v24", "divineelegancemix_V10", "dreamshaper_8",
    "waiANINSFWPONYXL_v80",
)
DEFAULT_MODEL = "oneFORALLAnime"

LORAS: tuple[str, ...] = (
    "add_detail", "detailed_notrigger", "aidmaMidjourneyV6.1-v0.1", "CHP_0.1v",
    "EtherPDXLStyleXL", "Sv5-10", "Selene", "COMMIX", "M_Pixel", "pixel_f2",
    "sailormoon-pdxl-nvls-v1", "sailormoon-pdxl-nvwls-v1",
)

SAMPLERS: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M",
    "DPM++ SDE", "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM",
)
DEFAULT_SAMPLER = "Euler a"

#: The daemon's default limits (its settings can change them; it fits sizes itself).
DEFAULT_WIDTH, DEFAULT_HEIGHT = 512, 768
MIN_SIDE, MAX_SIDE, SIZE_MULTIPLE = 256, 1536, 8
MAX_IMAGES = 4
MAX_SEED = 2**32 - 1
LORA_WEIGHT = 0.7
