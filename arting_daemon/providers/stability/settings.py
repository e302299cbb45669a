"""The ``[[providers]]`` fields only a Stability AI provider takes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: The models a Stability provider offers, and the v2beta route each one is made at.
MODELS = {"core": "Stable Image Core", "ultra": "Stable Image Ultra",
          "sd3.5-large": "Stable Diffusion 3.5 Large",
          "sd3.5-large-turbo": "Stable Diffusion 3.5 Large Turbo",
          "sd3.5-medium": "Stable Diffusion 3.5 Medium"}
StylePreset = Literal["3d-model", "analog-film", "anime", "cinematic", "comic-book",
                      "digital-art", "enhance", "fantasy-art", "isometric", "line-art",
                      "low-poly", "modeling-compound", "neon-punk", "origami", "photographic",
                      "pixel-art", "tile-texture"]


class StabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The key from platform.stability.ai, sent as ``Authorization: Bearer``.
    api_key: SecretStr | None = None
    #: ``style_preset`` sent with every generation (unset: none).
    style_preset: StylePreset | None = None
    #: The format asked for (the daemon keeps PNGs either way).
    output_format: Literal["png", "jpeg", "webp"] = "png"
    #: How upscale jobs are made: ``fast`` (about 4×), ``conservative``, ``creative``
    #: (asynchronous, polled at ``/v2beta/results/{id}``), or ``off``.
    upscale: Literal["fast", "conservative", "creative", "off"] = "fast"
    #: The prompt ``conservative`` and ``creative`` require.
    upscale_prompt: str = Field("a sharp, detailed, high-resolution version of this image",
                                min_length=1, max_length=10000)
    #: ``creativity`` for ``conservative``/``creative`` (unset: Stability's default).
    creativity: float | None = Field(None, ge=0, le=0.5)
    #: Read ``GET /v1/user/balance`` and show the credits in the status.
    balance: bool = True
