"""The kinds the daemon ships, registered as plugins are: entry points in the group
``arting_2api.providers`` of its own ``pyproject.toml`` name these (``kinds.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .a1111 import A1111Provider
from .arting.provider import ArtingProvider
from .base import Features
from .build import open_arting, remote
from .kinds import ProviderKind
from .midjourney import provider as midjourney
from .midjourney.settings import MODELS as MIDJOURNEY_MODELS, MidjourneySettings
from .openai import OpenAIProvider
from .remote import SyncProvider
from .stability import provider as stability
from .stability.settings import MODELS as STABILITY_MODELS, StabilitySettings

if TYPE_CHECKING:
    from ..provider_config import ProviderConfig
    from .build import Services


@asynccontextmanager
async def open_remote(s: Services, cfg: ProviderConfig) -> AsyncIterator[SyncProvider]:
    """An A1111 or OpenAI-compatible provider: it holds nothing to close."""
    yield remote(s, cfg)


ARTING = ProviderKind(ArtingProvider, open_arting, credentials="auth_tokens",
                      features=Features(img2img=True, upscale=True, loras=True))
A1111 = ProviderKind(A1111Provider, open_remote, credentials="username and password",
                     features=Features(img2img=True, loras=True))
OPENAI = ProviderKind(OpenAIProvider, open_remote, credentials="api_key")
MIDJOURNEY = ProviderKind(midjourney.MidjourneyProvider, midjourney.make, MidjourneySettings,
                          models=MIDJOURNEY_MODELS,
                          credentials="api_key (sent as mj-api-secret)",
                          features=Features(upscale=True, max_n=midjourney.QUADRANTS))
STABILITY = ProviderKind(stability.StabilityProvider, stability.make, StabilitySettings,
                         models=STABILITY_MODELS, credentials="api_key",
                         base_url="https://api.stability.ai",
                         features=Features(img2img=True, upscale=True))
