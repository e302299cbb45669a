"""What clients send the job API: a generation's or an upscale's body for ``POST /jobs``,
and the query of ``GET /jobs`` (the WebSocket's ``submit`` takes the same bodies)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.jobs import JobState
from ..generation import Lora


WEBHOOK_URL = ("Where to POST the job when it ends, signed as Standard Webhooks do "
               "(needs `webhook_secret`; see webhooks.py).")


class GenerateRequest(BaseModel):
    """Generate ``n`` images; every field but ``prompt`` has a default (``GET /catalog``
    says which)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "a lighthouse at dawn, watercolour", "model": "oneFORALLAnime",
         "size": "512x768", "n": 2, "seed": 42, "loras": [{"id": "add_detail", "weight": 0.6}]}]})

    kind: Literal["generate"] = "generate"
    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    size: str | None = None
    n: int = 1
    seed: int = -1
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    clip_skip: int | None = None
    loras: list[Lora] = []
    nsfw: bool | None = None
    #: base64 or data URL of an init image (image-to-image)
    init_image: str | None = None
    #: base64 or data URL of a mask: white where the image may change
    mask: str | None = None
    strength: float | None = None
    cache: bool = Field(True, description="false: never answer from the result cache (as "
                                          "`Cache-Control: no-cache`).")
    webhook_url: str | None = Field(None, description=WEBHOOK_URL)


class UpscaleRequest(BaseModel):
    """Upscale pictures 2× or 4×: each one the hash of a stored image (a result), or the
    image itself as base64 or a data URL."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "upscale", "images": ["<the hash of a result image>"], "scale": 4}]})

    kind: Literal["upscale"]
    images: list[str] = []
    image: str | None = None
    scale: int = 2
    webhook_url: str | None = Field(None, description=WEBHOOK_URL)


class JobsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(20, description="How many (1 to 100; others are clamped).")
    before: float | None = Field(None, description="Only jobs made before this time "
                                                   "(`next_before` of the previous page).")
    state: JobState | None = Field(None, description="Only jobs in this state.")
