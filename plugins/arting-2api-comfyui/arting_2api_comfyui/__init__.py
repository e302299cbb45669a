"""arting-2api-comfyui: a ComfyUI server as a provider of arting-2api (``kind =
"comfyui"``). The daemon finds ``KIND`` through the entry point in this package's
``pyproject.toml``."""

from arting_daemon.providers.base import Features
from arting_daemon.providers.kinds import ProviderKind

from .provider import ComfyUIProvider, make
from .settings import ComfyUISettings

KIND = ProviderKind(ComfyUIProvider, make, ComfyUISettings, contract="1.0",
                    credentials="api_key (sent as Authorization: Bearer)",
                    features=Features())

__all__ = ["KIND", "ComfyUIProvider", "ComfyUISettings"]
