"""What public clients show Arting accepts: model ids, LoRA ids, samplers.

Arting publishes no list endpoint, so these are the ids seen in public code
(``docs/protocol/arting.md`` §4, §11). Operators add more with ``extra_models`` and
``extra_loras``.
"""

from __future__ import annotations

#: Model ids, with a friendly name where one is known.
MODELS: dict[str, str] = {
    "oneFORALLAnime": "One For All Anime",
    "oneFORALLReality_vPony": "One For All Reality (Pony)",
    "asyncsMIX_v7": "asyncsMIX v7",
    "cyberrealisticPony_v65": "CyberRealistic Pony v6.5",
    "maturemalemix_v14": "Mature Male Mix v1.4",
    "fuwafuwamix_v15BakedVae": "Fuwafuwa Mix v1.5",
    "mistoonJade_v10Anime": "Mistoon Jade v1.0 Anime",
    "pastelMixPrunedFP16": "Pastel Mix",
    "comicBabes_v2": "Comic Babes v2",
    "ghostmix_v20Bakedvae": "GhostMix v2.0",
    "cyberrealisticSemi_v30": "CyberRealistic Semi v3.0",
    "furworldFurry": "Furworld Furry",
    "divineanimemix_V2": "Divine Anime Mix v2",
    "cuteAnime_v10": "Cute Anime v1.0",
    "absolutereality_v181": "Absolute Reality v1.8.1",
    "animatedModelsOf_31": "Animated Models 3.1",
    "SDXLFaetastic_v24": "SDXL Faetastic v2.4",
    "divineelegancemix_V10": "Divine Elegance Mix v1.0",
    "dreamshaper_8": "DreamShaper 8",
    "waiANINSFWPONYXL_v80": "WAI-ANI-NSFW-PONYXL v8.0",
}

#: LoRA ids, with the display names public clients give them.
LORAS: dict[str, str] = {
    "add_detail": "Detail Tweaker",
    "detailed_notrigger": "extremely detailed",
    "aidmaMidjourneyV6.1-v0.1": "Midjourney V6.1",
    "CHP_0.1v": "PONY & ANIMAGINE",
    "EtherPDXLStyleXL": "Ether PDXL | Style for NoobAI 1.0",
    "Sv5-10": "Silver Wolf / Honkai: Star Rail",
    "Selene": "Selene",
    "COMMIX": "COMMIX",
    "M_Pixel": "M_Pixel",
    "pixel_f2": "pixel_f2",
    "sailormoon-pdxl-nvls-v1": "Sailor Moon (PDXL)",
    "sailormoon-pdxl-nvwls-v1": "Sailor Moon (PDXL, alt. id)",
}

#: Sampler names as the website lists them (A1111 names).
SAMPLERS: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M",
    "DPM++ SDE", "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM",
)
DEFAULT_SAMPLER = "Euler a"

#: A1111's schedulers, name → label. Arting's only scheduler choice is a sampler's Karras
#: variant; every other one is accepted and means the sampler's own schedule.
SCHEDULERS: dict[str, str] = {
    "automatic": "Automatic", "uniform": "Uniform", "karras": "Karras",
    "exponential": "Exponential", "polyexponential": "Polyexponential",
    "sgm_uniform": "SGM Uniform", "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps", "simple": "Simple", "normal": "Normal",
    "ddim": "DDIM", "beta": "Beta",
}

#: Model names OpenAI clients hard-code; they stand for the configured default model.
OPENAI_MODEL_NAMES: tuple[str, ...] = (
    "dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5",
    "gpt-image-2", "chatgpt-image-latest",
)

#: Sizes offered by public front-ends (portrait 512×768 is the website default).
SIZE_PRESETS: tuple[str, ...] = ("512x768", "768x512", "512x512", "768x768", "512x1024",
                                 "1024x512", "832x1216", "1024x1024")
