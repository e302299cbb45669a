"""The sandbox's other providers: with ``--sandbox`` the daemon offers Midjourney's and
Stability AI's models beside Arting's, each made by its emulator (``midjourney.py``,
``stability.py``), so a new user sees every kind on the page with no account.

``sandbox_providers`` names the ones to start. None is started when the sandbox replays
a record (it stands in for the live Arting then), nor one whose name or kind the
settings' own ``[[providers]]`` have.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from ..config import Settings
from ..provider_config import ProviderConfig
from .emulator import Emulator

log = logging.getLogger(__name__)

#: The key and secret the emulators take (nothing real: they answer on loopback only).
SANDBOX_KEY = "sk-sandbox"


def _midjourney(generation_time: float) -> tuple[Emulator, dict]:
    from .midjourney import MidjourneyEmulator
    emulator = MidjourneyEmulator(generation_time=generation_time,
                                  upscale_time=min(1.0, generation_time),
                                  api_secret=SANDBOX_KEY)
    return emulator, {"label": "Midjourney (emulator)", "api_key": SANDBOX_KEY}


def _stability(generation_time: float) -> tuple[Emulator, dict]:
    from .stability import StabilityEmulator
    emulator = StabilityEmulator(api_keys=[SANDBOX_KEY], upscale_time=min(1.0, generation_time))
    return emulator, {"label": "Stability AI (emulator)", "api_key": SANDBOX_KEY}


#: kind → its emulator, made for a generation time, and the fields of the provider at it.
EMULATORS = {"midjourney": _midjourney, "stability": _stability}


@asynccontextmanager
async def emulated_providers(settings: Settings) -> AsyncIterator[list[ProviderConfig]]:
    """Start the emulators and yield the providers that point at them; closed at the end."""
    taken = {p.name for p in settings.providers} | {p.kind for p in settings.providers}
    kinds = [] if settings.sandbox_replay is not None else \
        [k for k in dict.fromkeys(settings.sandbox_providers) if k not in taken]
    async with AsyncExitStack() as stack:
        providers = []
        for kind in kinds:
            emulator, fields = EMULATORS[kind](settings.sandbox_generation_time)
            url = await emulator.start()
            stack.push_async_callback(emulator.close)
            log.info("sandbox: %s emulator at %s", emulator.NAME, url)
            providers.append(ProviderConfig.model_validate(
                {"name": kind, "kind": kind, "base_url": url, **fields}))
        yield providers
