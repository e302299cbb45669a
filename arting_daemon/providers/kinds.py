"""The provider kinds that bring their own settings: Midjourney and Stability AI.

Arting, A1111 and OpenAI-compatible servers are described by ``ProviderConfig``'s own
fields. A kind here has a pydantic model of the fields only it takes (validated when
the settings load, with the rest of the entry), the models it offers, how messages
name its credentials, and where its provider is made (imported only when one is
configured). This table is the one place the daemon learns of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .midjourney.settings import MODELS as MIDJOURNEY_MODELS, MidjourneySettings
from .stability.settings import MODELS as STABILITY_MODELS, StabilitySettings


@dataclass(frozen=True)
class KindSpec:
    #: Its own ``[[providers]]`` fields.
    settings: type[BaseModel]
    #: What it offers for ``models = "*"``: ids → names (without a prefix unless set).
    models: dict[str, str]
    #: How it takes its credentials, for messages.
    credentials: str
    #: ``module:function`` making its provider from ``(Services, ProviderConfig)``.
    factory: str
    #: Where it is unless ``base_url`` says otherwise (None: ``base_url`` is required).
    base_url: str | None = None
    #: Whether it does image-to-image unless ``img2img`` says.
    img2img: bool = False

    def make(self, *args: Any) -> Any:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)(*args)

    def own_keys(self) -> set[str]:
        """The keys of its fields as an entry may spell them (aliases too)."""
        keys = set()
        for name, field in self.settings.model_fields.items():
            keys.add(name)
            choices = getattr(field.validation_alias, "choices", ())
            keys.update(c for c in choices if isinstance(c, str))
        return keys


KINDS: dict[str, KindSpec] = {
    "midjourney": KindSpec(MidjourneySettings, MIDJOURNEY_MODELS,
                           "api_key (sent as mj-api-secret)",
                           "arting_daemon.providers.midjourney.provider:make"),
    "stability": KindSpec(StabilitySettings, STABILITY_MODELS, "api_key",
                          "arting_daemon.providers.stability.provider:make",
                          base_url="https://api.stability.ai", img2img=True),
}
