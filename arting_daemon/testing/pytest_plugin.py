"""The kit as a pytest plugin (registered in the ``pytest11`` group): the fixture
``provider_conformance``, an async function checking a provider against its emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def provider_conformance(tmp_path: Path) -> Callable[..., Awaitable[None]]:
    """``await provider_conformance(upstream)`` (or ``(upstream, kind)``) fails the test
    with one line per rule the provider breaks."""
    from .conformance import check_provider     # the daemon loads only where it is used

    async def check(upstream: Any, kind: Any = None) -> None:
        await check_provider(upstream, kind, tmp_path / "conformance")
    return check
