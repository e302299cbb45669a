"""The ComfyUI API emulator for the plugin's tests, with the key a proxy in front wants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from arting_2api_comfyui.emulator import ComfyUIEmulator

KEY = "comfy-key-5ecret-0123456789"


class Upstream:
    """The emulator as the conformance kit drives it (``arting_daemon.testing.Upstream``)."""

    def __init__(self, emulator: ComfyUIEmulator) -> None:
        self.emulator = emulator
        self.secret = KEY
        self.entry: dict[str, Any] = {"name": "studio", "kind": "comfyui",
                                      "base_url": emulator.url, "api_key": KEY}

    def submissions(self) -> int:
        return self.emulator.submissions()

    def fault(self, kind: str | None) -> None:
        self.emulator.fault(kind)


@pytest.fixture
async def comfyui() -> AsyncIterator[ComfyUIEmulator]:
    emulator = ComfyUIEmulator(token=KEY)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()


@pytest.fixture
def upstream(comfyui: ComfyUIEmulator) -> Upstream:
    return Upstream(comfyui)
